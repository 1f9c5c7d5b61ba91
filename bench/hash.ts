// npm run bench:hash — hashing throughput for B x T = 8 x 4096 Brown Corpus tokens with
// the reference's default config (2 layers x 16 heads), against the machine's
// memory-write bound for the same output measured in the same process; and the call a user
// writes (hash() per layer, fresh outputs) against numpy running the reference's hashing.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PerformanceObserver } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';

import { CompressedTokenizer, NgramHashMapping, buildInfo, devices } from '../src/index.js';
import { hashThroughput, machineFacts, median, progress, timeRuns } from '../src/core/throughput.js';
import { brownTokens } from './corpus.js';
import { markdownTable, SMOKE, smokeOr, writeResults } from './harness.js';

const B = smokeOr(8, 1);
const T = smokeOr(4096, 256);
const RUNS = smokeOr(9, 1);

const tokenizer = CompressedTokenizer.deepseekV3();
const mapping = new NgramHashMapping({}, tokenizer);
const ids = brownTokens(tokenizer, B * T);
const cols = mapping.headsPerLayer * mapping.config.layerIds.length;
const info = buildInfo();
const facts = machineFacts();

// The bound: writing the same int32 output once (one thread), in this process.
const sink = new Int32Array(B * T * cols);
let value = 0;
const fill = timeRuns(() => sink.fill(++value), RUNS);
const writeBound = (B * T) / fill.medianSeconds;

const rows: Array<{ label: string; threads: number | 'all'; tokensPerSecond: number; medianSeconds: number; samples: number[] }> = [];
for (const threads of [1, info.cpuThreads]) {
  const show = progress(`cpu, ${threads} thread(s): run`);
  const r = hashThroughput(mapping, ids, [B, T], { threads, runs: RUNS, onRun: (i) => show(i, RUNS) });
  rows.push({ label: `cpu (${info.cpuKernel}), ${threads} thread${threads > 1 ? 's' : ''}`, threads, tokensPerSecond: r.tokensPerSecond, medianSeconds: r.medianSeconds, samples: r.samples });
}
if (devices().length > 0) {
  const r = hashThroughput(mapping, ids, [B, T], { device: 'cuda', runs: RUNS });
  rows.push({ label: `cuda ${devices()[0].name} (incl. copies)`, threads: 'all', tokensPerSecond: r.tokensPerSecond, medianSeconds: r.medianSeconds, samples: r.samples });
}

// The call a user writes: hash() for each layer, per-head ids into fresh outputs (the
// library's own allocation), against numpy running the reference's hashing on the same ids
// in the same session (bench/numpy_hash.py; it checks it gets the same ids first).
const layerIds = mapping.config.layerIds;
const defaultCall = () => layerIds.map((layer) => mapping.hash(ids, [B, T], layer));
defaultCall();
// V8's GC pauses while each kind of loop runs (the GC's concurrent marking, on the other
// core, is not in these): the share of the default call's time the outputs' GCs take.
let gcMs = 0;
const gcObserver = new PerformanceObserver((list) => {
  for (const e of list.getEntries()) gcMs += e.duration;
});
gcObserver.observe({ entryTypes: ['gc'] });
// GC entries reach the observer some time after the GC (not within one turn of the loop).
const settle = () => new Promise<void>((resolve) => setTimeout(resolve, 100));
const gcDuring = async (f: () => void | Promise<void>) => {
  await settle(); // entries of earlier work are delivered
  const start = gcMs;
  await f();
  await settle();
  return gcMs - start;
};
let defaultRuns = timeRuns(() => {}, 0, 0);
const tightGcMs = await gcDuring(() => {
  defaultRuns = timeRuns(defaultCall, RUNS);
});
const defaultTokensPerSecond = (B * T) / defaultRuns.medianSeconds;
// The same call as a server's loop makes it: a turn of the event loop between calls,
// where the outputs JS let go (once a GC has found them) return to the library's pool.
// Timed after enough calls for V8's GC, paced by the outputs' bytes, to have run a few
// times (one per about 64 MiB of outputs), so the pool holds what a long-running loop's does.
const WARM_CALLS = smokeOr(64, 1);
const turn = () => new Promise<void>((resolve) => setImmediate(resolve));
const turnSamples: number[] = [];
for (let i = 0; i < WARM_CALLS; i++) {
  defaultCall();
  await turn();
}
const turnGcMs = await gcDuring(async () => {
  for (let i = 0; i < RUNS; i++) {
    const t0 = process.hrtime.bigint();
    defaultCall();
    turnSamples.push(Number(process.hrtime.bigint() - t0) / 1e9);
    await turn();
  }
});
gcObserver.disconnect();
const turnTokensPerSecond = (B * T) / median(turnSamples);
const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
const gcShare = (gc: number, samples: number[]) => `${((100 * gc) / (1e3 * sum(samples))).toFixed(0)}%`;
let numpyPeer: { numpy: string; tokensPerSecond: number; medianSeconds: number } | undefined;
// Not in smoke mode: the test suite runs the smoke benchmarks, and Python stays out of it.
if (!SMOKE) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'engram-bench-hash-'));
  try {
    const expected = path.join(dir, 'expected.i32');
    const outs = defaultCall();
    fs.writeFileSync(expected, Buffer.concat(outs.map((o) => Buffer.from(o.buffer, o.byteOffset, o.byteLength))));
    const job = path.join(dir, 'job.json');
    fs.writeFileSync(job, JSON.stringify({ spec: mapping.toSpec(), lookup: Array.from(tokenizer.lookup), ids: Array.from(ids), batch: B, seqLen: T, runs: RUNS, expected }));
    const py = spawnSync('python3', [path.join(path.dirname(fileURLToPath(import.meta.url)), 'numpy_hash.py'), job], { encoding: 'utf8', maxBuffer: 2 ** 26 });
    const line = py.status === 0 ? py.stdout.trim().split('\n').pop() : undefined;
    if (line) numpyPeer = JSON.parse(line);
    else process.stderr.write(`numpy peer not run: ${py.error?.message ?? py.stderr.slice(-400)}\n`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const table = markdownTable(
  ['backend', 'M tokens/s', 'median ms', 'vs write bound'],
  [
    ...rows.map((r) => [r.label, (r.tokensPerSecond / 1e6).toFixed(1), (r.medianSeconds * 1e3).toFixed(2), `${((100 * r.tokensPerSecond) / writeBound).toFixed(0)}%`]),
    ['memory-write bound (Int32Array.fill of the output, 1 thread)', (writeBound / 1e6).toFixed(1), (fill.medianSeconds * 1e3).toFixed(2), '100%'],
  ],
);
const header =
  `# Hashing throughput\n\nhashRows, B x T = ${B} x ${T} Brown Corpus tokens (DeepSeek-V3 tokenizer), default config ` +
  `(layers [${mapping.config.layerIds}], ${mapping.headsPerLayer} heads each), int32 global row ids, median of ${RUNS} runs after 2 warm-ups.\n\n` +
  `Machine: ${facts.cpu}, ${facts.cores} cores, ${facts.memoryGiB} GiB, ${facts.platform}, Node ${facts.node}; CPU loop: ${info.cpuKernel}; ` +
  `CUDA: ${devices().length ? devices()[0].name : `none (${info.deviceUnavailableReason})`}.\n\n`;
const userCall =
  `\nThe call a user writes: \`hash(ids, [${B}, ${T}], layer)\` for each of the ${layerIds.length} layers, per-head ids into fresh outputs (${info.cpuThreads} threads, medians of ${RUNS}): ` +
  `**${(defaultTokensPerSecond / 1e6).toFixed(1)} M tokens/s** back to back in a synchronous loop (every output fresh memory; V8's GC pauses: ${gcShare(tightGcMs, defaultRuns.samples)} of the time), ` +
  `**${(turnTokensPerSecond / 1e6).toFixed(1)} M tokens/s** with a turn of the event loop between calls, as a server's loop has (outputs recycled; timed after ${WARM_CALLS} such calls; GC pauses: ${gcShare(turnGcMs, turnSamples)}). ` +
  `Into a reused \`out\`: the rows above. ` +
  (numpyPeer
    ? `numpy ${numpyPeer.numpy} running the reference's hashing on the same ids, same session (bench/numpy_hash.py, ids checked equal): ` +
      `${(numpyPeer.tokensPerSecond / 1e6).toFixed(2)} M tokens/s, so **${(defaultTokensPerSecond / numpyPeer.tokensPerSecond).toFixed(1)}x** and ` +
      `**${(turnTokensPerSecond / numpyPeer.tokensPerSecond).toFixed(1)}x** numpy.\n`
    : `numpy peer not run (${SMOKE ? 'smoke mode' : 'python3 with numpy not found'}).\n`);
console.log(header + table + userCall);
writeResults(
  'hash',
  {
    benchmark: 'hash',
    date: new Date().toISOString(),
    machine: facts,
    cpuKernel: info.cpuKernel,
    batch: B,
    seqLen: T,
    runs: RUNS,
    writeBoundTokensPerSecond: writeBound,
    writeBoundSamples: fill.samples,
    medianOfFill: median(fill.samples),
    results: rows,
    defaultCall: { call: 'hash(ids, [B, T], layer) for each layer', tokensPerSecond: defaultTokensPerSecond, samples: defaultRuns.samples, gcPauseMs: tightGcMs },
    defaultCallWithTurns: { call: 'the same, a turn of the event loop between calls', warmCalls: WARM_CALLS, tokensPerSecond: turnTokensPerSecond, samples: turnSamples, gcPauseMs: turnGcMs },
    numpy: numpyPeer ?? null,
  },
  header + table + userCall,
);
