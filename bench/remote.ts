// npm run bench:remote — DeepSeek-V4.1's Engram layer with its table in a Redis Cluster
// (3 masters + 3 replicas on loopback, started here), against the same layer with the
// table in RAM and through the file tier, in the same run. The bench:v41 checkpoint
// (released dimensions, table rows scaled down) is pushed, then:
// - decode 64 x 1 and prefill 1 x 1024 on Brown Corpus text, each step's prefetch issued
//   one layer ahead: the layers in between are emulated as a delay (the lead) before the
//   forward; the forward's own time (stall included) gives the tokens/s;
// - the stall share, bytes per token over the network, the p50/p99 latency of a
//   prefetch's fetch, the cache's row hit rate;
// - a calibration entry for `engram plan` (effective network GB/s and round trip).
import fs from 'node:fs';
import path from 'node:path';

import { buildInfo, DeepseekV41EngramModel, pushCheckpoint, writeSyntheticV41Checkpoint } from '../src/index.js';
import { machineFacts, progress } from '../src/core/throughput.js';
import { startRedis } from '../test/remote/cluster.js';
import { brownTokens } from './corpus.js';
import { markdownTable, smokeOr, writeResults } from './harness.js';

const log = (s: string) => process.stderr.write(`${s}\n`);
const info = buildInfo();
const facts = machineFacts();
const scale = smokeOr(Number(process.env.V41_ROWS_SCALE ?? 0.005), 2e-5);
const hiddenSize = smokeOr<number | undefined>(undefined, 256);
const dir = path.join(process.env.ENGRAM_CACHE_DIR ?? '.cache', `bench-v41-${scale}${hiddenSize ? `-d${hiddenSize}` : ''}`);
if (!fs.existsSync(path.join(dir, 'model.safetensors.index.json'))) {
  log(`writing a synthetic checkpoint (rows x ${scale}) to ${dir}...`);
  writeSyntheticV41Checkpoint(dir, { rowsScale: scale, hiddenSize, layerIds: [1], onProgress: progress('  layers') });
}
const STEPS = smokeOr(Number(process.env.BENCH_STEPS ?? 40), 2);
const ROUNDS = smokeOr(Number(process.env.BENCH_ROUNDS ?? 4), 2);
const LEADS_MS = smokeOr([0, 1, 5, 20], [1]);
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const quantile = (xs: number[], q: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))];

log('starting a Redis Cluster (3 masters + 3 replicas) on loopback...');
const redis = await startRedis({ persist: false });
try {
  // The baseline: the table copied into this process's memory (a mapped file's rows measured
  // slower to gather here, 48-55 ms a decode step against 41).
  const ram = DeepseekV41EngramModel.fromCheckpoint(dir, { device: 'cpu', table: { tier: 'host', copy: true } });
  const layer = ram.layers.get(1)!;
  const table = layer.table;
  const pageRows = 1; // one-row pages: a miss moves one row (as bench:pager's file tier)
  const t0 = performance.now();
  const show = progress('  pushing pages');
  const buckets = process.env.REMOTE_BUCKETS === undefined ? undefined : Number(process.env.REMOTE_BUCKETS);
  const [pushed] = await pushCheckpoint(dir, { url: redis.url }, { pageRows, buckets, batchPages: 4096, onProgress: (_l, d, n, phase) => phase === 'push' && show(d, n) });
  const pushSeconds = (performance.now() - t0) / 1000;
  log(`  pushed ${pushed.pages.toLocaleString()} pages (${(table.byteLength / 2 ** 20).toFixed(0)} MiB of rows) in ${pushSeconds.toFixed(1)} s`);
  // A cache of an eighth of the table for both paged tiers.
  const cacheBytes = Math.floor(table.byteLength / 8);
  const remote = DeepseekV41EngramModel.fromCheckpoint(dir, { device: 'cpu', table: { tier: 'remote', url: redis.url, cacheBytes, pageRows } });
  await remote.remoteReady();
  // The same tier with every read through ioredis (directReads false): what the store's own
  // connections save.
  const remoteIoredis = DeepseekV41EngramModel.fromCheckpoint(dir, { device: 'cpu', table: { tier: 'remote', url: redis.url, cacheBytes, pageRows, directReads: false } });
  await remoteIoredis.remoteReady();
  const file = DeepseekV41EngramModel.fromCheckpoint(dir, { device: 'cpu', table: { tier: 'file', cacheBytes, pageRows } });
  const { hiddenSize: D, hcMult: hc } = layer.config;
  const corpus = brownTokens(ram.hashMapping.tokenizer, 256 * 1024);
  const models = { ram, file, remote, 'remote-ioredis': remoteIoredis } as const;
  type Tier = keyof typeof models;

  let seed = 7;
  const random = (n: number) => Float32Array.from({ length: n }, () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32) * 2 - 1);
  const phases = [
    { phase: 'decode' as const, B: smokeOr(64, 4), S: 1 },
    { phase: 'prefill' as const, B: 1, S: smokeOr(1024, 32) },
  ];

  interface Row {
    phase: 'decode' | 'prefill';
    leadMs: number;
    tier: Tier;
    tokensPerSecond: number;
    loss: number | null;
    /** Each round's loss (1 - the tier's tokens/s over the RAM tier's in that round), in round order. */
    roundLosses: number[] | null;
    stallShare: number | null;
    rowHitRate: number | null;
    networkBytesPerToken: number | null;
    fetchP50Ms: number | null;
    fetchP99Ms: number | null;
  }
  const rows: Row[] = [];
  let calibration: { networkGBps: number; networkRttUs: number; fitPoints: number } | undefined;
  const jobPoints: Array<[number, number]> = []; // (pages, seconds) of every remote fetch

  for (const ph of phases) {
    const streams = new Map([[1, random(ph.B * ph.S * hc * D)]]);
    let at = 0; // the text goes on from lead to lead: no lead re-reads rows an earlier one cached
    for (const lead of ph.phase === 'decode' ? LEADS_MS : [LEADS_MS.includes(1) ? 1 : LEADS_MS[0]]) {
      const tally = new Map<Tier, { seconds: number[]; stall: number; layerSeconds: number; net: number; tokens: number; jobs: number[]; hits: number; lookups: number }>();
      for (const t of Object.keys(models) as Tier[]) tally.set(t, { seconds: [], stall: 0, layerSeconds: 0, net: 0, tokens: 0, jobs: [], hits: 0, lookups: 0 });
      const bar = progress(`  ${ph.phase} ${ph.B} x ${ph.S}, lead ${lead} ms`);
      // Rounds of every tier in turn (the first round warms up): each tier meets this
      // shared machine in the same states, and reads the same text.
      for (let round = 0; round <= ROUNDS; round++) {
        const tiers = Object.keys(models) as Tier[];
        const run = tiers.map((t) => {
          const model = models[t];
          const l = model.layers.get(1)!;
          if (l.pager) l.resetPagerStats();
          const stats0 = l.pager?.remoteStats();
          return { t, model, l, state: model.newState(ph.B), net0: stats0?.bytes ?? 0, jobs0: stats0?.jobSeconds.length ?? 0, layerSeconds: 0 };
        });
        // Each tier runs the round's steps in turn, on the same text; the tier that goes first
        // moves on each round, so no tier always follows the same one (a tier inherits the
        // state the one before left: the collector's garbage, the servers' work in flight).
        const start = at;
        for (let k = 0; k < run.length; k++) {
          const r = run[(k + round) % run.length];
          at = start;
          for (let s = 0; s < STEPS; s++) {
            const ids = new Int32Array(ph.B * ph.S);
            for (let i = 0; i < ids.length; i++) ids[i] = corpus[at++ % corpus.length];
            const history = ph.S === 1 ? r.state.history : undefined;
            const ticket = r.model.prefetch(ids, [ph.B, ph.S], { history });
            await sleep(lead); // the layers between the prefetch and this one
            const f0 = performance.now();
            const out = await r.model.forwardAsync(streams, ids, [ph.B, ph.S], { history, ticket });
            r.layerSeconds += (performance.now() - f0) / 1000;
            if (history) r.state.history = out.history;
          }
        }
        bar(round + 1, ROUNDS + 1);
        if (round === 0) continue; // the first round warms up
        for (const { t, l, net0, jobs0, layerSeconds } of run) {
          const x = tally.get(t)!;
          x.seconds.push(layerSeconds);
          x.tokens += STEPS * ph.B * ph.S;
          x.layerSeconds += layerSeconds;
          if (l.pager) {
            const ps = l.pagerStats();
            x.stall += ps.stallSeconds;
            x.hits += ps.rowHits;
            x.lookups += ps.lookups;
          }
          const st = l.pager?.remoteStats();
          if (st) {
            x.net += st.bytes - net0;
            x.jobs.push(...st.jobSeconds.slice(jobs0));
            if (t === 'remote') st.jobSeconds.slice(jobs0).forEach((sec, i) => jobPoints.push([st.jobPages[jobs0 + i], sec]));
          }
        }
      }
      // A tier's loss is 1 - the median over the rounds of its speed over the RAM tier's in
      // the same round: the tiers of a round run back to back, so a slow spell of this
      // shared machine weighs on both sides of each ratio.
      const ramSeconds = tally.get('ram')!.seconds;
      for (const t of Object.keys(models) as Tier[]) {
        const x = tally.get(t)!;
        const tps = (STEPS * ph.B * ph.S) / median(x.seconds);
        const roundLosses = t === 'ram' ? null : x.seconds.map((sec, i) => 1 - ramSeconds[i] / sec);
        rows.push({
          phase: ph.phase,
          leadMs: lead,
          tier: t,
          tokensPerSecond: tps,
          loss: roundLosses === null ? null : 1 - median(roundLosses.map((l) => 1 - l)),
          roundLosses,
          stallShare: t === 'ram' ? null : x.stall / x.layerSeconds,
          rowHitRate: t === 'ram' ? null : x.hits / x.lookups,
          networkBytesPerToken: t.startsWith('remote') ? x.net / x.tokens : null,
          fetchP50Ms: t.startsWith('remote') && x.jobs.length ? 1000 * quantile(x.jobs, 0.5) : null,
          fetchP99Ms: t.startsWith('remote') && x.jobs.length ? 1000 * quantile(x.jobs, 0.99) : null,
        });
      }
    }
  }
  await remote.close();
  await remoteIoredis.close();
  // Calibration for engram plan: a fetch's time as a round trip plus a cost per page
  // (least squares over every fetch, decode and prefill sizes), the per-page cost read as
  // an effective bandwidth over the page's bytes (rows, scales, 32-byte header).
  if (jobPoints.length >= 2) {
    const n = jobPoints.length;
    const mx = jobPoints.reduce((a, [x]) => a + x, 0) / n;
    const my = jobPoints.reduce((a, [, y]) => a + y, 0) / n;
    const slope = jobPoints.reduce((a, [x, y]) => a + (x - mx) * (y - my), 0) / Math.max(1e-12, jobPoints.reduce((a, [x]) => a + (x - mx) ** 2, 0));
    const intercept = my - slope * mx;
    const pageBytes = pageRows * (table.rowBytes + table.cols / 32) + 32;
    calibration = { networkGBps: pageBytes / Math.max(1e-12, slope) / 1e9, networkRttUs: Math.max(0, intercept) * 1e6, fitPoints: n };
  }

  const fmt = (v: number | null, f: (x: number) => string) => (v === null ? '—' : f(v));
  const md =
    `# The remote tier: DeepSeek-V4.1's layer with its table in a Redis Cluster\n\n` +
    `Machine: ${facts.cpu}, ${facts.cores} cores, ${facts.memoryGiB} GiB, CPU kernel ${info.cpuKernel}; Redis ${redis.cli(redis.ports[0], 'INFO', 'server').match(/redis_version:(\S+)/)?.[1]} cluster of 3 masters + 3 replicas on loopback (no persistence); tier remote reads pages over the store's own connections (the default), remote-ioredis through ioredis alone (directReads: false, auto-pipelining). ` +
    `Layer 1 at the released dimensions (hidden ${D}, hc ${hc}, 24 rows x 256 fp8 + 8 scales per token), table rows scaled by ${scale}: ${table.rows.toLocaleString()} rows, ${(table.byteLength / 2 ** 20).toFixed(0)} MiB, ` +
    `pushed as ${pushed.pages.toLocaleString()} one-row pages in ${pushed.buckets} hash-tag groups (one MGET per group a fetch touches) in ${pushSeconds.toFixed(1)} s. Paged tiers: an LRU cache of an eighth of the table, one-row pages. ` +
    `Each step prefetches its rows, waits the lead (the layers in between, emulated), then runs the layer (forwardAsync with the ticket); tokens/s count the layer's own time, stall included. ` +
    `Medians of ${ROUNDS} rounds of ${STEPS} steps per tier, the tiers taking turns on the same Brown Corpus text (the first of each round rotating), the text running on from lead to lead. Loss: against the RAM tier (the table copied into the process's memory), 1 - the median over the rounds of the tier's speed over the RAM tier's in the same round; "rounds" gives the least and the most loss of a round.\n\n` +
    markdownTable(
      ['phase', 'lead ms', 'tier', 'tokens/s', 'loss vs RAM', 'rounds, least to most loss', 'stall share', 'row hit rate', 'network B/token', 'fetch p50 ms', 'fetch p99 ms'],
      rows.map((r) => [
        `${r.phase} ${r.phase === 'decode' ? `${phases[0].B} x 1` : `1 x ${phases[1].S}`}`,
        r.leadMs,
        r.tier,
        r.tokensPerSecond.toFixed(0),
        fmt(r.loss, (v) => `${(100 * v).toFixed(1)}%`),
        r.roundLosses === null ? '—' : `${(100 * Math.min(...r.roundLosses)).toFixed(1)}% .. ${(100 * Math.max(...r.roundLosses)).toFixed(1)}%`,
        fmt(r.stallShare, (v) => `${(100 * v).toFixed(1)}%`),
        fmt(r.rowHitRate, (v) => `${(100 * v).toFixed(1)}%`),
        fmt(r.networkBytesPerToken, (v) => v.toFixed(0)),
        fmt(r.fetchP50Ms, (v) => v.toFixed(2)),
        fmt(r.fetchP99Ms, (v) => v.toFixed(2)),
      ]),
    ) +
    spreadNote(rows) +
    (calibration
      ? `\nCalibration for \`engram plan --calibration bench/results/remote.json\`, a straight line through ${calibration.fitPoints} fetches of tier remote (time = round trip + pages x per-page cost): ` +
        `round trip ${calibration.networkRttUs.toFixed(0)} µs, per-page cost equivalent to ${calibration.networkGBps.toFixed(3)} GB/s of page bytes. On this 2-core machine the per-page cost is CPU ` +
        `(the client's work per page, 6 Redis processes sharing the cores with the layer), not loopback bandwidth.\n`
      : '');
  console.log(md);
  writeResults('remote', { benchmark: 'remote', date: new Date().toISOString(), machine: facts, cpuKernel: info.cpuKernel, scale, steps: STEPS, rounds: ROUNDS, pushSeconds, pages: pushed.pages, buckets: pushed.buckets, rows, calibration }, md);
} finally {
  await redis.stop();
}

/** How much the RAM tier's own decode speed moved between the leads of one run: the noise floor of the losses. */
function spreadNote(rows: ReadonlyArray<{ phase: string; tier: string; tokensPerSecond: number }>): string {
  const ram = rows.filter((r) => r.tier === 'ram' && r.phase === 'decode').map((r) => r.tokensPerSecond);
  if (ram.length < 2) return '';
  const [lo, hi] = [Math.min(...ram), Math.max(...ram)];
  return `\nThe RAM tier's own decode speed ranged ${lo.toFixed(0)}-${hi.toFixed(0)} tokens/s across the leads of this run (${((100 * (hi - lo)) / hi).toFixed(0)}%): a loss, or gain, smaller than that is this machine's noise. The tiers measured in the same rounds (remote against remote-ioredis) compare more closely.\n`;
}
