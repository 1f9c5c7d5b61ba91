// npm run bench:pager-profile — where the time of a paged decode step goes. DeepSeek-V4.1's
// two Engram layers (released width) over the bench:pager checkpoint, tables in their
// files, the file tier with one-row pages, LRU, 256 MiB of cache per layer, the OS page
// cache warm: decode steps of 16 sequences x 1 token of real text, each prefetching both
// layers' rows and running the forward with its ticket (as bench:pager does). The step runs
// under `perf record`; every sample is put in one bucket by the function it landed in
// (bookkeeping, translation, the copies, the gather through the cache, the layer's own
// compute, thread hand-offs, JS), and the buckets are written with their share of the
// samples. The same steps over the tables mapped without a pager are profiled beside it.
//
// Runs itself as the profiled child (`--workload <mode>`); without perf (or in smoke mode)
// it runs the workload alone and reports its tokens/s.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { buildInfo, DeepseekV41EngramModel, type EngramTable } from '../src/index.js';
import { native } from '../src/native/index.js';
import { nativeBuffer } from '../src/table/table.js';
import { machineFacts, median, progress } from '../src/core/throughput.js';
import { brownTokens } from './corpus.js';
import { markdownTable, SMOKE, smokeOr, synthCheckpointInChild, writeResults } from './harness.js';

const log = (s: string) => process.stderr.write(`${s}\n`);
const rowsScale = smokeOr(0.04, 2e-5);
const hiddenSize = smokeOr<number | undefined>(undefined, 256);
const dir = path.join(process.env.ENGRAM_CACHE_DIR ?? '.cache', `bench-pager-v41-${rowsScale}${hiddenSize ? `-d${hiddenSize}` : ''}`);
const CACHE_BYTES = smokeOr(256, 1) * 2 ** 20;
const STEPS = smokeOr(Number(process.env.BENCH_STEPS ?? 1500), 4);
const [B, S] = [16, 1];

type Mode = 'paged' | 'mapped';

function loadModel(mode: Mode | 'ram'): DeepseekV41EngramModel {
  if (mode === 'mapped') return DeepseekV41EngramModel.fromCheckpoint(dir, { device: 'cpu' });
  if (mode === 'ram') return DeepseekV41EngramModel.fromCheckpoint(dir, { device: 'cpu', table: { tier: 'host', copy: true } });
  return DeepseekV41EngramModel.fromCheckpoint(dir, { device: 'cpu', table: { tier: 'file', cacheBytes: CACHE_BYTES, pageRows: 1, eviction: 'lru' } });
}

/**
 * Decode steps over `model`: each prefetches both layers' rows, then runs the forward with
 * its ticket (prefetch false: the forward alone, which hashes and reads on its own).
 */
function stepper(model: DeepseekV41EngramModel, prefetch = true) {
  const { hiddenSize: D, hcMult: hc } = model.layers.get(1)!.config;
  const corpus = brownTokens(model.hashMapping.tokenizer, 64 * 1024);
  let seed = 7;
  const random = () =>
    Float32Array.from({ length: B * S * hc * D }, () => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return (seed / 4294967296) * 2 - 1;
    });
  const streams = new Map([...model.layers.keys()].map((id) => [id, random()]));
  /** `steps` steps of text from token `at` on; tokens per second. */
  return (at: number, steps: number): number => {
    const t0 = process.hrtime.bigint();
    for (let s = 0; s < steps; s++) {
      const ids = new Int32Array(B * S);
      for (let i = 0; i < ids.length; i++) ids[i] = corpus[(at + s * B * S + i) % corpus.length];
      const ticket = prefetch ? model.prefetch(ids, [B, S]) : undefined;
      model.forward(streams, ids, [B, S], { ticket });
    }
    return (steps * B * S) / (Number(process.hrtime.bigint() - t0) / 1e9);
  };
}

/** The profiled work: warm-up steps, then STEPS timed decode steps. Prints one JSON line. */
function workload(mode: Mode): void {
  const run = stepper(loadModel(mode));
  run(0, Math.min(STEPS, 300)); // the cache and the OS page cache warm up
  perfControl('enable'); // only the timed steps are sampled, not the load and the warm-up
  const tokensPerSecond = run(300 * B * S, STEPS);
  perfControl('disable');
  console.log(JSON.stringify({ mode, tokensPerSecond, steps: STEPS }));
}

const ROUNDS = smokeOr(9, 2);
const PASS_STEPS = smokeOr(150, 2);
const COLD_ROUNDS = smokeOr(5, 1);
const COLD_PASS_STEPS = smokeOr(40, 2);

/**
 * Empties the OS page cache (root only) of the tables too: drop_caches leaves the pages a
 * process maps, so this process's mappings of `tables` are released first.
 */
function dropPageCache(tables: EngramTable[] = []): boolean {
  for (const t of tables) {
    for (const r of t.parts.flatMap((p) => [p.region, p.scaleRegion])) {
      if (r !== undefined) native().releaseMappedPages({ buffer: nativeBuffer(r.buffer), byteOffset: r.byteOffset, byteLength: r.byteLength });
    }
  }
  try {
    spawnSync('sync');
    fs.writeFileSync('/proc/sys/vm/drop_caches', '1\n');
    return true;
  } catch {
    return false;
  }
}

type Setup = 'ram' | 'mapped' | 'mapped, no prefetch' | 'paged';
interface Timing {
  mode: Setup;
  cold: boolean;
  tokensPerSecond: number;
  passes: number[];
  lossVsRam: number;
}

/**
 * Wall-clock, no profiler: the tables in RAM (copied into this process), mapped (with and
 * without prefetch(), whose read-ahead maps the rows' pages on a worker), and behind the
 * pager, taking turns pass by pass over the same text (the first round warms up and is
 * dropped); medians, and the loss against RAM. Then, where the page cache can be emptied
 * (root), the mapped setups cold: the cache emptied before every pass.
 */
let coldRows: { rows: number; readAheadMs: number; faultMs: number } | undefined;

async function interleaved(): Promise<Timing[]> {
  log('loading the setups (the RAM one copies the tables into this process)...');
  const [ram, mapped, paged] = (['ram', 'mapped', 'paged'] as const).map(loadModel);
  const setups: Array<{ mode: Setup; run: ReturnType<typeof stepper>; tps: number[] }> = [
    { mode: 'ram', run: stepper(ram), tps: [] },
    { mode: 'mapped', run: stepper(mapped), tps: [] },
    { mode: 'mapped, no prefetch', run: stepper(mapped, false), tps: [] },
    { mode: 'paged', run: stepper(paged), tps: [] },
  ];
  const rounds = (list: typeof setups, count: number, steps: number, label: string, before?: () => void) => {
    const show = progress(`  ${label}`);
    for (let r = 0; r < count; r++) {
      for (let k = 0; k < list.length; k++) {
        const setup = list[(r + k) % list.length]; // each goes first in turn
        if (setup.mode !== 'ram') before?.();
        const tps = setup.run(r * steps * B * S, steps);
        if (r > 0 || count === 1) setup.tps.push(tps);
      }
      show(r + 1, count);
    }
  };
  rounds(setups, ROUNDS, PASS_STEPS, 'warm passes');
  const summary = (list: typeof setups, cold: boolean): Timing[] => {
    const base = median(list[0].tps);
    return list.map((s) => ({ mode: s.mode, cold, tokensPerSecond: median(s.tps), passes: s.tps, lossVsRam: 1 - median(s.tps) / base }));
  };
  const out = summary(setups, false);
  // Smoke runs go through the cold rounds without emptying this machine's page cache.
  const mappedTables = [...mapped.layers.values()].map((l) => l.table);
  const drop = SMOKE ? () => true : () => dropPageCache(mappedTables);
  if (drop()) {
    const coldSetups = setups.filter((s) => s.mode !== 'paged').map((s) => ({ ...s, tps: [] as number[] }));
    rounds(coldSetups, COLD_ROUNDS, COLD_PASS_STEPS, 'cold passes (page cache emptied before each)', drop);
    out.push(...summary(coldSetups, true));
    // One decode step's rows of layer 1, cold: read ahead (all pages requested at once)
    // against the gather faulting them in one by one.
    const table = mapped.layers.get(1)!.table;
    let s = 11;
    const rows = () => Int32Array.from({ length: B * S * 24 }, () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0), s % table.rows));
    const readAheadMs: number[] = [];
    const faultMs: number[] = [];
    for (let i = 0; i < smokeOr(5, 1); i++) {
      drop();
      let t0 = performance.now();
      await table.readAhead(rows());
      readAheadMs.push(performance.now() - t0);
      drop();
      t0 = performance.now();
      table.gather(rows());
      faultMs.push(performance.now() - t0);
    }
    coldRows = { rows: B * S * 24, readAheadMs: median(readAheadMs), faultMs: median(faultMs) };
  } else {
    log('  cold passes skipped: emptying the page cache needs root (/proc/sys/vm/drop_caches)');
  }
  return out;
}

/** Under `perf record --control fifo:...` (PERF_CTL / PERF_ACK): a command, then its ack. */
function perfControl(command: 'enable' | 'disable'): void {
  const ctl = process.env.PERF_CTL;
  const ack = process.env.PERF_ACK;
  if (!ctl || !ack) return;
  fs.writeFileSync(ctl, `${command}\n`);
  const fd = fs.openSync(ack, 'r');
  try {
    fs.readSync(fd, Buffer.alloc(5), 0, 5, null);
  } finally {
    fs.closeSync(fd);
  }
}

/** Which bucket a sampled function belongs to (first match wins). */
const BUCKETS: Array<[string, RegExp]> = [
  ['pager bookkeeping (plan, admit, assign, record, release)', /Pager::(acquire|planBatch|admit|assignSlots|record|release|makeEvictable|removeEvictable|popVictim|compactEvictable|newTicket|settleCopies|wait\b)|PageMap::|BatchSet::|PageCounts::|PagerAcquire|PagerRelease|pagerAcquire|pagerRelease/],
  ['translation (row id -> cache row)', /Pager::translate|pagedCacheRow|hotRowIndex/],
  ['copies into the cache (copy thread, pread, memcpy)', /CpuCopyEngine|copyRows|preadFully|__memmove|__memcpy|memcpy|copy_user|filemap_read|copy_page_to_iter|pread/],
  ['gather through the cache (row decode, packing)', /gather|Gather|decodeRow|packGathered|readRows|convertRow/],
  ['layer compute (GEMM, norms, gates, conv)', /gemm|Gemm|linear|Linear|microKernel|kernel_|v41|V41|rmsNorm|engramRow|hashRows|ngram|Ngram|hash/],
  ['thread hand-offs (wake, wait, spin)', /futex|spinUntil|ThreadPool|cpuRelax|pthread_cond|schedule|__sched|try_to_wake_up|finish_task_switch|do_syscall|entry_SYSCALL|syscall_exit|__lll_lock|pthread_mutex/],
  ['JS and V8', /^(Builtin|LazyCompile|Function|Interpreted|Baseline|Maglev|Turbofan|JS:|~|\*)|v8::|V8|Builtins_|node::|napi_|Napi::|uv_/],
];
const OTHER = 'other (kernel, libc)';

interface Profile {
  mode: Mode;
  tokensPerSecond: number;
  samples: number;
  buckets: Array<{ bucket: string; share: number }>;
  threads: Array<{ thread: string; share: number }>;
  top: Array<{ symbol: string; share: number }>;
}

function perfAvailable(): boolean {
  return spawnSync('perf', ['--version'], { encoding: 'utf8' }).status === 0;
}

function profile(mode: Mode): Profile {
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'engram-pager-profile-'));
  const data = path.join(scratch, `${mode}.data`);
  const [ctl, ack] = [path.join(scratch, 'ctl'), path.join(scratch, 'ack')];
  const self = fileURLToPath(import.meta.url);
  try {
    for (const fifo of [ctl, ack]) {
      if (spawnSync('mkfifo', [fifo]).status !== 0) throw new Error(`mkfifo ${fifo} failed`);
    }
    const rec = spawnSync(
      'perf',
      ['record', '-F', '1999', '-g', '-D', '-1', '--control', `fifo:${ctl},${ack}`, '-o', data, '--', process.execPath, '--perf-basic-prof', '--import', 'tsx', self, '--workload', mode],
      { encoding: 'utf8', maxBuffer: 64 * 2 ** 20, env: { ...process.env, PERF_CTL: ctl, PERF_ACK: ack } },
    );
    if (rec.status !== 0) throw new Error(`perf record failed: ${rec.stderr.slice(-2000)}`);
    const result = JSON.parse(rec.stdout.trim().split('\n').at(-1)!) as { tokensPerSecond: number };
    // Rows of `perf report`: the share, the sample count (-n), then the sort key's columns.
    const report = (sort: string) => {
      const r = spawnSync('perf', ['report', '-i', data, '--stdio', '-n', '--no-children', '--sort', sort, '-g', 'none', '--percent-limit', '0', '--field-separator', '\t'], { encoding: 'utf8', maxBuffer: 256 * 2 ** 20 });
      if (r.status !== 0) throw new Error(`perf report failed: ${r.stderr.slice(-2000)}`);
      const rows: Array<{ share: number; samples: number; key: string[] }> = [];
      for (const line of r.stdout.split('\n')) {
        if (line.startsWith('#') || line.trim() === '') continue;
        const cells = line.split('\t').map((c) => c.trim());
        const share = Number.parseFloat(cells[0]) / 100;
        if (Number.isFinite(share)) rows.push({ share, samples: Number(cells[1]), key: cells.slice(2) });
      }
      return rows;
    };
    // perf pads the symbol column ("name   -   -"); keep the name.
    const bySymbol = report('symbol').map((r) => ({ symbol: r.key.join(' ').replace(/^\[[.k]\]\s*/, '').replace(/(\s+-)+\s*$/, ''), share: r.share }));
    const threadRows = report('comm');
    const byThread = threadRows.map((r) => ({ thread: r.key[0], share: r.share }));
    const samples = threadRows.reduce((n, r) => n + r.samples, 0);
    const totals = new Map<string, number>();
    for (const { symbol, share } of bySymbol) {
      const bucket = BUCKETS.find(([, re]) => re.test(symbol))?.[0] ?? OTHER;
      totals.set(bucket, (totals.get(bucket) ?? 0) + share);
    }
    const buckets = [...BUCKETS.map(([b]) => b), OTHER].map((bucket) => ({ bucket, share: totals.get(bucket) ?? 0 }));
    return { mode, tokensPerSecond: result.tokensPerSecond, samples, buckets, threads: byThread.slice(0, 8), top: bySymbol.slice(0, 15) };
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true });
  }
}

const workloadAt = process.argv.indexOf('--workload');
if (workloadAt >= 0) {
  workload(process.argv[workloadAt + 1] as Mode);
} else {
  if (!fs.existsSync(path.join(dir, 'model.safetensors.index.json'))) {
    log(`writing a synthetic V4.1 checkpoint (rows x ${rowsScale}) to ${dir}...`);
    synthCheckpointInChild(dir, { rowsScale, hiddenSize });
  }
  if (SMOKE || !perfAvailable()) {
    // No profiler here: run the work itself, so that its code paths are exercised.
    if (!SMOKE) log('perf is not installed: running the workload without a profile');
    for (const mode of ['paged', 'mapped'] as Mode[]) {
      const self = fileURLToPath(import.meta.url);
      const r = spawnSync(process.execPath, ['--import', 'tsx', self, '--workload', mode], { encoding: 'utf8', env: process.env });
      if (r.status !== 0) throw new Error(`the ${mode} workload failed: ${r.stderr.slice(-2000)}`);
      log(`  ${mode}: ${r.stdout.trim()}`);
    }
    for (const t of await interleaved()) log(`  interleaved ${t.mode}${t.cold ? ', cold' : ''}: ${t.tokensPerSecond.toFixed(0)} tokens/s`);
  } else {
    const profiles = (['paged', 'mapped'] as Mode[]).map((mode) => {
      log(`profiling ${mode} decode (${STEPS} steps of ${B} x ${S})...`);
      return profile(mode);
    });
    const timing = await interleaved();
    const info = buildInfo();
    const facts = machineFacts();
    const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
    const [paged, mapped] = profiles;
    const names: Record<Setup, string> = {
      ram: 'tables in RAM (copied into the process, no pager)',
      mapped: 'tables mapped from the files (no pager), prefetch reads ahead',
      'mapped, no prefetch': 'tables mapped from the files (no pager), no prefetch',
      paged: 'file tier, one-row pages, LRU',
    };
    const md =
      `# Where a paged decode step's time goes\n\n` +
      `DeepSeek-V4.1's layers 1 and 14 at the released width over the bench:pager checkpoint (rows x ${rowsScale}), ${B} sequences x ${S} token of Brown Corpus text per step, ` +
      `each step prefetching both layers' rows and running the forward with its ticket. "paged": the file tier, one-row pages, LRU, ${CACHE_BYTES / 2 ** 20} MiB of cache per layer, ` +
      `the OS page cache warm; "mapped": the same tables mapped from the files, no pager. ${STEPS} steps each after 300 to warm up, under \`perf record -F 1999 -g\`; ` +
      `each sample counted once, in the function it landed in (self time), and put in the first bucket whose pattern names that function (bench/pager-profile.ts).\n\n` +
      `Machine: ${facts.cpu}, ${facts.cores} cores, ${facts.memoryGiB} GiB, CPU kernel ${info.cpuKernel}. ` +
      `Decode: paged ${paged.tokensPerSecond.toFixed(0)} tokens/s, mapped ${mapped.tokensPerSecond.toFixed(0)} tokens/s under the profiler (${pct(1 - paged.tokensPerSecond / mapped.tokensPerSecond)} lost).\n\n` +
      markdownTable(['bucket', 'paged', 'mapped'], paged.buckets.map((b, i) => [b.bucket, pct(b.share), pct(mapped.buckets[i].share)])) +
      `\n\nSamples: ${paged.samples.toLocaleString('en-US')} paged, ${mapped.samples.toLocaleString('en-US')} mapped.\n\n` +
      `## Wall clock, no profiler\n\n` +
      `The setups in one process, taking turns pass by pass (the same text for each in a round, each first in turn): median tokens/s and the difference from the tables in RAM (+: faster). ` +
      `Warm: ${ROUNDS} rounds of ${PASS_STEPS} steps, the first dropped. Cold: the OS page cache emptied (drop_caches) before every pass of a mapped setup, ${COLD_ROUNDS} rounds of ${COLD_PASS_STEPS} steps, the first dropped; ` +
      `"mapped": prefetch() at the start of each step reads the rows' pages ahead on a worker (a read a page, and MADV_WILLNEED on all the rest once one has to wait; while every page is found cached, on one prefetch in 16 only), so layer 14's overlap layer 1's compute; "no prefetch": the forward alone faults them in.\n\n` +
      markdownTable(['setup', 'page cache', 'decode tokens/s', 'vs RAM', 'passes (tokens/s)'], timing.map((t) => [names[t.mode], t.mode === 'ram' ? '—' : t.cold ? 'cold' : 'warm', t.tokensPerSecond.toFixed(0), t.mode === 'ram' ? '—' : `${t.lossVsRam > 0 ? '−' : '+'}${Math.abs(100 * t.lossVsRam).toFixed(1)}%`, t.passes.map((x) => x.toFixed(0)).join(', ')])) +
      (coldRows === undefined
        ? ''
        : `\n\nOne decode step's rows of layer 1 (${coldRows.rows}), cold, median of 5: read ahead (\`table.readAhead\`: every page requested at once once one read waits, then mapped) ${coldRows.readAheadMs.toFixed(1)} ms; ` +
          `the gather faulting them in one at a time ${coldRows.faultMs.toFixed(1)} ms. This VM's disk is cached by its host after a first read, so "cold" here is the host's cache, not the device.`) +
      `\n\nBy thread (paged):\n\n` +
      markdownTable(['thread', 'share of samples'], paged.threads.map((t) => [t.thread, pct(t.share)])) +
      `\n\nThe functions with the most samples (paged):\n\n` +
      markdownTable(['function', 'share'], paged.top.map((t) => [t.symbol.replace(/\|/g, '\\|').slice(0, 110), pct(t.share)])) +
      '\n';
    console.log(md);
    writeResults('pager-profile', { benchmark: 'pager-profile', date: new Date().toISOString(), machine: { ...facts, cpuKernel: info.cpuKernel }, cpuKernel: info.cpuKernel, rowsScale, cacheBytes: CACHE_BYTES, steps: STEPS, profiles, interleaved: timing, coldRows }, md);
  }
}
