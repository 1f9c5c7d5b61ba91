// npm run bench:pager — the table pager on real access streams and a file-backed table:
//   1. the Brown Corpus access stream (distribution, hot-row share),
//   2. hit rate vs cache size for LRU, LFU and hot-row residency (chart),
//   3. DeepSeek-V4.1's layers with the tables in a file several times larger than the
//      cache vs in RAM, decode and prefill,
//   4. the GPU model (`engram plan`) calibrated by 1 and 3.
// Environment: PAGER_TOKENS (corpus tokens, default all), PAGER_ROWS_SCALE (V4.1 table
// rows relative to the release, default 0.04: two tables of 3.9 GiB, so that a copy in
// RAM and the OS page cache of the files both fit in 24 GiB), PAGER_CACHE_MIB (per
// layer, default 256: 512 MiB for both, 1/15 of the tables), PAGER_STEPS (decode steps per pass, default 48),
// ENGRAM_CACHE_DIR (where the synthetic checkpoints are kept, default .cache),
// PAGER_PARTS (default 'hits,file,shared,gpu'; parts left out are taken from the last
// results; gpu runs only where a CUDA device is visible).
import fs from 'node:fs';
import path from 'node:path';

import { buildInfo, devices } from '../src/index.js';
import { formatPlan, OFFLOAD_DEFAULTS, OFFLOAD_PRESETS, planOffload, type OffloadPlanInput } from '../src/table/plan.js';
import { machineFacts } from '../src/core/throughput.js';
import { markdownTable, resultsDir, smokeOr, synthCheckpointInChild, synthSeconds, writeResults } from './harness.js';
import { fileTierBenchmark } from './pager-file.js';
import { sharedCopyBenchmark } from './pager-shared.js';
import { CACHE_SHARES, hitRateBenchmark } from './pager-hits.js';
import { lineChart } from './svg.js';

const log = (s: string) => process.stderr.write(`${s}\n`);
const runStarted = performance.now();
const facts = machineFacts();
const pct = (x: number | null | undefined, digits = 1) => (x === null || x === undefined ? 'n/a' : `${(100 * x).toFixed(digits)}%`);

const parts = new Set((process.env.PAGER_PARTS ?? 'hits,file,shared,gpu').split(','));
const previousFile = path.join(resultsDir, 'pager.json');
const previous = fs.existsSync(previousFile) ? (JSON.parse(fs.readFileSync(previousFile, 'utf8')) as Record<string, unknown>) : {};
const reuse = <T>(name: string): T => {
  if (previous[name] === undefined) throw new Error(`PAGER_PARTS leaves out '${name}' but ${previousFile} has no earlier result for it`);
  log(`  (${name}: the earlier result from ${previousFile})`);
  return previous[name] as T;
};

// First, while this process holds little memory.
log('0. one host copy for two processes...');
// A checkpoint of 1 GiB tables (files under 4 GiB) for this part.
const sharedScale = smokeOr(0.01, 2e-5);
const sharedDir = path.join(process.env.ENGRAM_CACHE_DIR ?? '.cache', `bench-pager-v41-${sharedScale}`);
if (parts.has('shared') && !fs.existsSync(path.join(sharedDir, 'model.safetensors.index.json'))) synthCheckpointInChild(sharedDir, { rowsScale: sharedScale, hiddenSize: smokeOr<number | undefined>(undefined, 256) });
const shared = parts.has('shared') ? await sharedCopyBenchmark(sharedDir, 2) : reuse<Awaited<ReturnType<typeof sharedCopyBenchmark>>>('shared');

log('1-2. access stream and hit rates (Brown Corpus, reference default config)...');
const hits = parts.has('hits') ? hitRateBenchmark(Number(process.env.PAGER_TOKENS ?? smokeOr(600_000, 4_000))) : reuse<ReturnType<typeof hitRateBenchmark>>('hits');

log('3. file tier vs RAM (DeepSeek-V4.1 layers)...');
const file = parts.has('file')
  ? fileTierBenchmark({
      rowsScale: Number(process.env.PAGER_ROWS_SCALE ?? smokeOr(0.04, 1e-4)),
      cacheBytesPerLayer: Number(process.env.PAGER_CACHE_MIB ?? smokeOr(256, 2)) * 2 ** 20,
      steps: Number(process.env.PAGER_STEPS ?? smokeOr(48, 2)),
      pairs: Number(process.env.PAGER_PAIRS ?? smokeOr(5, 1)),
      hiddenSize: smokeOr<number | undefined>(undefined, 256),
    })
  : reuse<ReturnType<typeof fileTierBenchmark>>('file');

// With a GPU the same comparison measures the CUDA pager (device cache over PCIe) against
// whole tables in device memory, instead of leaving the GPU case to the model alone.
const gpu =
  devices().length > 0 && parts.has('gpu')
    ? fileTierBenchmark({
        rowsScale: Number(process.env.PAGER_ROWS_SCALE ?? 0.04),
        cacheBytesPerLayer: Number(process.env.PAGER_CACHE_MIB ?? 256) * 2 ** 20,
        steps: Number(process.env.PAGER_STEPS ?? 48),
        pairs: Number(process.env.PAGER_PAIRS ?? 5),
        device: 'cuda',
      })
    : undefined;
if (gpu === undefined) log('  (no GPU measurement: no CUDA device visible, or PAGER_PARTS leaves out gpu)');

// 4. The GPU model, calibrated: dedup share (decode, 16 sequences) and the host's row
// read time from 3; the hit rate of one-row LRU with 10% of the table cached from 2.
const decodeLru = file.rows.find((r) => r.phase === 'decode' && r.mode.startsWith('file tier, one-row pages, LRU, warm'));
const lru10 = hits.points.find((p) => p.policy === 'LRU, one-row pages' && p.cacheShare === 0.1);
const calibration: Partial<OffloadPlanInput> = {
  uniqueShare: decodeLru?.uniqueShare ?? 1,
  cacheHitRate: lru10?.rowHitRate ?? 0,
  cachePageRows: 1,
  hostRowReadNs: Math.round(file.hostRowReadNs),
};
const plans = [25, 50].flatMap((pcie) =>
  Object.keys(OFFLOAD_PRESETS).map((preset) => planOffload({ ...OFFLOAD_DEFAULTS, ...OFFLOAD_PRESETS[preset], ...calibration, pcieGBps: pcie, batchTokens: 16 } as OffloadPlanInput)),
);

// Charts.
const policies = [...new Set(hits.points.map((p) => p.policy))];
const hitChart = lineChart({
  title: 'Engram row hit rate vs cache size (Brown Corpus, layer 1)',
  xLabel: 'cache size, share of the table (log)',
  yLabel: 'row hit rate',
  logX: true,
  yMin: 0,
  yMax: 1,
  formatX: (x) => `${+(100 * x).toFixed(1)}%`,
  formatY: (y) => `${(100 * y).toFixed(0)}%`,
  series: policies.map((policy) => ({
    name: policy,
    points: hits.points.filter((p) => p.policy === policy && p.rowHitRate !== null).map((p) => [p.cacheShare, p.rowHitRate!] as [number, number]),
  })),
});
fs.mkdirSync(resultsDir, { recursive: true });
fs.writeFileSync(path.join(resultsDir, 'pager-hit-rate.svg'), hitChart);



// Tables.
const dist = markdownTable(
  ['config', 'table rows', 'lookups', 'distinct rows', 'top 1% of read rows', 'top 10% of read rows', 'hottest 1% of the table', ...CACHE_SHARES.map((s) => `hot ${+(100 * s).toFixed(0)}% (unseen text)`)],
  hits.distributions.map((d) => [
    d.config,
    d.tableRows.toLocaleString(),
    d.lookups.toLocaleString(),
    d.distinctRows.toLocaleString(),
    pct(d.top1PercentOfRead),
    pct(d.top10PercentOfRead),
    pct(d.top1PercentOfTable),
    ...d.hotRowHitRate.map((h) => pct(h.hitRate)),
  ]),
);
const sweep = markdownTable(
  ['policy', ...CACHE_SHARES.map((s) => `${+(100 * s).toFixed(0)}% cached`)],
  policies.map((policy) => [
    policy,
    ...CACHE_SHARES.map((s) => {
      const p = hits.points.find((x) => x.policy === policy && x.cacheShare === s)!;
      return p.rowHitRate === null ? "batch doesn't fit" : `${pct(p.rowHitRate)} (${Math.round(p.bytesCopiedPerToken!).toLocaleString()} B/token)`;
    }),
  ]),
);
const signedLoss = (loss: number) => `${loss > 0 ? '−' : '+'}${(100 * Math.abs(loss)).toFixed(1)}%`;
const tier = markdownTable(
  ['configuration', 'phase', 'tokens/s', 'vs RAM', 'pairs, least to most loss', 'stall share', 'row hit rate', 'bytes copied / token'],
  file.rows.map((r) => [
    r.mode,
    r.phase,
    r.tokensPerSecond === null ? "step doesn't fit in the cache" : r.tokensPerSecond.toFixed(0),
    r.loss === null ? '—' : signedLoss(r.loss),
    r.pairLosses === undefined ? '—' : `${signedLoss(Math.min(...r.pairLosses))} .. ${signedLoss(Math.max(...r.pairLosses))}`,
    pct(r.stallShare),
    pct(r.rowHitRate),
    r.bytesCopiedPerToken === null ? '—' : Math.round(r.bytesCopiedPerToken).toLocaleString(),
  ]),
);
const runMinutes = (performance.now() - runStarted) / 60_000;
const md = [
  '# Table pager',
  '',
  `Machine: ${facts.cpu}, ${facts.cores} cores, ${facts.memoryGiB} GiB RAM, Node ${process.versions.node}; CPU backend (${buildInfo().cpuKernel}). ${new Date().toISOString().slice(0, 10)}.`,
  `This run took ${runMinutes.toFixed(1)} minutes${synthSeconds > 0 ? `, ${synthSeconds.toFixed(0)} s of them writing the synthetic checkpoints (a first run)` : ' (its checkpoints written by an earlier run)'}${parts.size < 4 ? `; parts run: ${[...parts].join(', ')}` : ''}.`,
  '',
  `## 1. The access stream`,
  '',
  `${hits.tokens.toLocaleString()} Brown Corpus tokens (DeepSeek-V3 tokenizer), hashed in chunks of ${hits.hashChunk} as one running text. "hot x%": the hottest rows of the first half`,
  `(as many as x% of the table) and the share of the second half's lookups they serve.`,
  '',
  dist,
  `## 2. Hit rate vs cache size`,
  '',
  `Simulated caches (the pager's own bookkeeping, no copies) of layer 1's table (bf16 rows of ${hits.rowBytes} B), warmed on the first half, measured on the second, batches of ${hits.batchTokens} tokens.`,
  `Chart: [pager-hit-rate.svg](pager-hit-rate.svg).`,
  '',
  sweep,
  `## 3. File tier vs RAM (DeepSeek-V4.1 layers 1 and 14)`,
  '',
  `Synthetic checkpoint in the released layout: ${(file.tableBytes / 2 ** 30).toFixed(1)} GiB of fp8 tables (rows x ${file.rowsScale}), D ${file.hidden}, hc ${file.hc};`,
  `cache ${(file.cacheBytesPerLayer / 2 ** 20).toFixed(0)} MiB per layer (${((2 * file.cacheBytesPerLayer) / file.tableBytes * 100).toFixed(1)}% of the tables). Decode: 16 sequences x 1 token, ${file.steps} steps a pass;`,
  `prefill: 1 x 512, ${file.prefillSteps ?? Math.max(2, Math.floor(file.steps / 8))} steps a pass. Each step prefetches both layers first (layer 14's copies overlap layer 1's compute). Every configuration runs ${file.pairs === undefined ? '3 passes (after a warm-up pass)' : `${file.pairs} pairs of passes (after a warm-up pair):`}`,
  file.pairs === undefined
    ? `alternating with passes of the in-RAM layers (the tables read into process memory with pread, so no page of the files is mapped and "cold" can drop them); "vs RAM" compares the medians of that interleaving.`
    : `a pass of it and a pass of the in-RAM layers back to back, which first alternating (the tables read into process memory with pread, so no page of the files is mapped and "cold" can drop them); "vs RAM" is the median of the pairs' ratios.`,
  `"warm OS cache": the file's pages are in the OS page cache (a RAM-speed home tier); "cold": the file's cached pages are dropped before every pass.`,
  '',
  tier,
  `Where the time of the warm one-row LRU decode goes (a perf profile, by bucket: bookkeeping, translation, copies, gather, compute, hand-offs): [pager-profile.md](pager-profile.md), \`npm run bench:pager-profile\`.`,
  '',
  `## One host copy for many processes`,
  '',
  `Two Node processes open the same checkpoint (a synthetic V4.1 checkpoint with 1 GiB tables; memory-mapped, read in place, no pager) and gather the same ${shared.rowsPerTable.toLocaleString()} random rows of each table.`,
  `The table pages they touched are the OS page cache's, mapped by both: /proc/<pid>/smaps_rollup per process (Pss counts a page shared by two processes half in each):`,
  '',
  markdownTable(['process', 'Rss MiB', 'Shared_Clean MiB', 'Pss MiB'], shared.rssKiB.map((rss, i) => [i + 1, (rss / 1024).toFixed(0), (shared.sharedCleanKiB[i] / 1024).toFixed(0), (shared.pssKiB[i] / 1024).toFixed(0)])),
  `The file tier shares the same way: its pread copies come from the one page cache, and only the cache of pages (cacheBytes) is private to each process.`,
  '',
  ...(gpu === undefined
    ? []
    : [
        `## 3b. Measured on ${devices()[0].name}`,
        '',
        markdownTable(
          ['configuration', 'phase', 'tokens/s', 'vs whole tables on the device', 'stall share', 'row hit rate', 'bytes over PCIe / token'],
          gpu.rows.map((r) => [r.mode, r.phase, r.tokensPerSecond === null ? "step doesn't fit" : r.tokensPerSecond.toFixed(0), r.loss === null ? '—' : `${(-100 * r.loss).toFixed(1)}%`, pct(r.stallShare), pct(r.rowHitRate), r.bytesCopiedPerToken === null ? '—' : Math.round(r.bytesCopiedPerToken).toLocaleString()]),
        ),
      ]),
  `## 4. The GPU case (${gpu === undefined ? 'model, not measured: no GPU here' : 'the model, beside the measurement above'})`,
  '',
  `Calibration from this run: unique share ${pct(calibration.uniqueShare)}, one-row LRU hit rate at 10% cached ${pct(calibration.cacheHitRate)}, host random-row read ${calibration.hostRowReadNs} ns. Steps of 16 tokens at 10,000 tokens/s. \`engram plan --calibration bench/results/pager.json\` recomputes it for any hardware.`,
  '',
  ...plans.map((p) => formatPlan(p)),
].join('\n');
writeResults('pager', { benchmark: 'pager', date: new Date().toISOString(), machine: { ...facts, cpuKernel: buildInfo().cpuKernel }, runMinutes, synthSeconds, hits, file, gpu, shared, calibration, plans }, md);
log(md);
