// npm run bench:v41 — DeepSeek-V4.1's Engram layer at the released dimensions (D 5120,
// hc 4, 24 rows x 256 fp8 channels per token, wkv [25600, 6144] fp8) on a synthetic
// checkpoint in the released layout (table rows scaled down to fit this machine):
// prefill 1 x 4096 and decode 64 x 1, the gather against the random-row read rate of
// the same table, the wkv GEMM against the FMA peak, and the layer against a plain
// TypeScript layer and numpy (bench/numpy_v41.py, run by this benchmark on the same checkpoint).
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { buildInfo, CompressedTokenizer, DeepseekV41EngramModel, EngramTable, MappedFile, writeSyntheticV41Checkpoint } from '../src/index.js';
import { regionBytes } from '../src/core/tensor.js';
import { native } from '../src/native/index.js';
import { machineFacts, median, progress, timeRuns } from '../src/core/throughput.js';
import { baselineV41Forward, type BaselineV41 } from '../test/reference/v41-layer.js';
import { brownTokens } from './corpus.js';
import { coldRowReads, markdownTable, measuredPeakGflops, SMOKE, smokeOr, writeResults } from './harness.js';

const ROWS_SCALE = smokeOr(Number(process.env.V41_ROWS_SCALE ?? 0.005), 2e-5);
const RUNS = smokeOr(Number(process.env.BENCH_RUNS ?? 5), 1);
// Smoke mode: hidden 256 instead of the released 5120 (wkv 1280 x 6144 instead of 25600 x 6144).
const HIDDEN = smokeOr<number | undefined>(undefined, 256);
const dir = path.join(process.env.ENGRAM_CACHE_DIR ?? '.cache', `bench-v41-${ROWS_SCALE}${HIDDEN ? `-d${HIDDEN}` : ''}`);
const log = (s: string) => process.stderr.write(`${s}\n`);
const info = buildInfo();
const facts = machineFacts();

if (!fs.existsSync(path.join(dir, 'model.safetensors.index.json'))) {
  log(`writing a synthetic checkpoint (rows x ${ROWS_SCALE}) to ${dir}...`);
  writeSyntheticV41Checkpoint(dir, { rowsScale: ROWS_SCALE, hiddenSize: HIDDEN, layerIds: [1], onProgress: progress('  layers') });
}
const model = DeepseekV41EngramModel.fromCheckpoint(dir, { device: 'cpu' }); // the CPU backend's figures
const layer = model.layers.get(1)!;
const { hiddenSize: D, hcMult: hc, headDim } = layer.config;
const cols = layer.rowsPerToken;
const features = cols * headDim;
log(`table ${layer.table.rows.toLocaleString()} rows x ${headDim} fp8 (${(layer.table.byteLength / 2 ** 30).toFixed(2)} GiB), wkv [${(hc + 1) * D}, ${features}]`);

// The table cut into 8 row ranges over the same mapping (what an mp8 checkpoint gives).
const splitTable = (() => {
  const t = layer.table;
  const per = Math.ceil(t.rows / 8);
  const parts = Array.from({ length: 8 }, (_, i) => {
    const begin = Math.min(t.rows, i * per);
    const n = Math.min(t.rows, begin + per) - begin;
    const r = (region: { buffer: ArrayBufferLike | MappedFile; byteOffset: number }, rowBytes: number) => ({ buffer: region.buffer, byteOffset: region.byteOffset + begin * rowBytes, byteLength: n * rowBytes });
    return { rows: n, data: r(t.region, headDim), scales: r(t.scaleRegion!, headDim / 32) };
  });
  return EngramTable.fromParts(parts, headDim, 'f8e4m3');
})();

let seed = 1;
const random = (n: number) => Float32Array.from({ length: n }, () => {
  seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
  return (seed / 4294967296) * 4 - 2;
});
const tokenizer: CompressedTokenizer = model.hashMapping.tokenizer;
const fp32Peak = measuredPeakGflops((seconds) => native().peakGflops({ threads: 0, seconds }));
// vdpbf16ps does two multiply-adds per lane where an fp32 FMA does one.
const peak = layer.wkvKernel === 'avx512-bf16' ? 2 * fp32Peak : fp32Peak;

function measure(B: number, S: number) {
  const ids = brownTokens(tokenizer, B * S);
  const streams = random(B * S * hc * D);
  const out = new Float32Array(streams.length);
  const rows = model.hashMapping.hashRows(ids, [B, S], { layers: [1], output: 'int32' }).rowIds as Int32Array;
  const stages: Float64Array[] = [];
  // Interleaved with each run: the layer asked for its rows, which gathers them in a
  // separate pass first (the gather alone, as the yardstick reads rows alone).
  const rowBuffer = new Float32Array(B * S * cols * headDim);
  const separate: number[] = [];
  const whole = timeRuns(() => {
    const stageSeconds = new Float64Array(3);
    layer.forwardRows(streams, rows, [B, S], { out, stageSeconds });
    stages.push(stageSeconds);
  }, RUNS, 2, () => {
    const stageSeconds = new Float64Array(3);
    layer.forwardRows(streams, rows, [B, S], { out, stageSeconds, returnRows: rowBuffer });
    separate.push(stageSeconds[0]);
  });
  const hash = timeRuns(() => model.hashMapping.hashRows(ids, [B, S], { layers: [1], output: 'int32' }), RUNS);
  const stage = (i: number) => median(stages.slice(-RUNS).map((s) => s[i]));
  // The yardstick: as many uniformly random rows of the same table, each read as stored
  // (256 fp8 codes and, in the scale tensor, its 8 UE8M0 codes: 264 bytes).
  let rs = 12345;
  // A fresh set of rows for every run (uniform over the table), so the yardstick reads
  // cold rows as the layer's gather does after the rest of the layer has run.
  const rowSets = Array.from({ length: RUNS * 3 + 2 }, () =>
    Int32Array.from({ length: B * S * cols }, () => {
      rs = (Math.imul(rs, 1103515245) + 12345) >>> 0;
      return Math.floor((rs / 4294967296) * layer.table.rows);
    }),
  );
  let set = 0;
  const randomIds = rowSets[0];
  const reads = timeRuns(() => native().readRows({ ...layer.table.nativeArgs(), rowIds: rowSets[set++ % rowSets.length], threads: 0, withScales: true }), RUNS * 3);
  const coldReads = coldRowReads(() => native().readRows({ ...layer.table.nativeArgs(), rowIds: rowSets[set++ % rowSets.length], threads: 0, withScales: true }), RUNS * 3);
  // The layer's gather alone, as the wkv GEMM packs it (no GEMM): on the rows of a fresh
  // chunk of text every run, as the yardstick reads fresh rows (the same rows run after
  // run would stay in the last-level cache).
  const text = brownTokens(tokenizer, B * S * (rowSets.length + 1));
  const layerSets = rowSets.map((_, i) => {
    const chunk = text.subarray(B * S * (i + 1), B * S * (i + 2));
    return model.hashMapping.hashRows(chunk, [B, S], { layers: [1], output: 'int32' }).rowIds as Int32Array;
  });
  let layerSet = 0;
  const nextRows = () => layerSets[layerSet++ % layerSets.length];
  const gatherArgs = { ...layer.table.nativeArgs(), rowIds: rows, tokens: B * S, rowsPerToken: cols, kernel: layer.wkvKernel, threads: 0 };
  // The same bytes read as 8 row ranges (as a table split over model{rank}-mp8 rank files is
  // read in place), interleaved run by run with the table in one region.
  const splitArgs = { ...splitTable.nativeArgs(), rowIds: rows, tokens: B * S, rowsPerToken: cols, kernel: layer.wkvKernel, threads: 0 };
  const splitSamples: number[] = [];
  // Each run and its split twin read fresh rows of their own.
  const packedWarm = timeRuns(() => native().gatherPacked({ ...gatherArgs, rowIds: nextRows() }), RUNS * 3, 2, () => {
    const args = { ...splitArgs, rowIds: nextRows() };
    const t0 = performance.now();
    native().gatherPacked(args);
    splitSamples.push((performance.now() - t0) / 1e3);
  }).medianSeconds;
  const splitWarm = median(splitSamples);
  const packedCold = coldRowReads(() => native().gatherPacked({ ...gatherArgs, rowIds: nextRows() }), RUNS * 3);
  const rowBytes = headDim + headDim / 32;
  return {
    shape: `${B} x ${S}`,
    tokensPerSecond: (B * S) / (whole.medianSeconds + hash.medianSeconds),
    layerMs: whole.medianSeconds * 1e3,
    hashMs: hash.medianSeconds * 1e3,
    gatherMs: stage(0) * 1e3,
    separateGatherMs: median(separate) * 1e3,
    packedWarmGBps: (B * S * cols * rowBytes) / packedWarm / 1e9,
    packedColdGBps: (B * S * cols * rowBytes) / packedCold / 1e9,
    splitWarmGBps: (B * S * cols * rowBytes) / splitWarm / 1e9,
    coldRandomRowGBps: (B * S * cols * rowBytes) / coldReads / 1e9,
    wkvMs: stage(1) * 1e3,
    gateMs: stage(2) * 1e3,
    gatherGBps: (B * S * cols * rowBytes) / median(separate) / 1e9,
    randomRowGBps: (B * S * cols * rowBytes) / reads.medianSeconds / 1e9,
    wkvGflops: (2 * B * S * features * (hc + 1) * D) / stage(1) / 1e9,
  };
}

const runs = SMOKE ? [measure(1, 256), measure(4, 1), measure(1, 32)] : [measure(1, 4096), measure(64, 1), measure(1, 1024)];

// The table where it is mapped (the checkpoint's page cache, 4 KiB pages) against the same
// table copied into process memory on transparent huge pages (tier 'host', copy: true):
// interleaved run by run on the layer's rows, 1 x 4096.
function mappedVsCopied() {
  log('mapped vs copied table...');
  const copied = DeepseekV41EngramModel.fromCheckpoint(dir, { device: 'cpu', table: { tier: 'host', copy: true } }).layers.get(1)!;
  const S = 4096;
  const ids = brownTokens(tokenizer, S);
  const rows = model.hashMapping.hashRows(ids, [1, S], { layers: [1], output: 'int32' }).rowIds as Int32Array;
  const streams = random(S * hc * D);
  const out = new Float32Array(streams.length);
  const samples = { mapped: [] as number[][], copied: [] as number[][] };
  for (let i = 0; i < RUNS + 2; i++) {
    for (const [name, l] of [['mapped', layer], ['copied', copied]] as const) {
      const stageSeconds = new Float64Array(3);
      const t0 = performance.now();
      l.forwardRows(streams, rows, [1, S], { out, stageSeconds });
      if (i >= 2) samples[name].push([(performance.now() - t0) / 1e3, stageSeconds[0]]);
    }
  }
  const of = (x: number[][]) => ({ tokensPerSecond: S / median(x.map((v) => v[0])), gatherMs: median(x.map((v) => v[1])) * 1e3 });
  return { mapped: of(samples.mapped), copied: of(samples.copied) };
}
const placement = mappedVsCopied();

// The plain TypeScript layer on 4 tokens, and the native layer on the same 4.
const tensors = (await import('../src/index.js')).findEngramTensors(dir).tensors;
const bytes = (name: string) => regionBytes(tensors[`layers.1.engram.${name}`].data, name);
const bf16 = (name: string) => {
  const b = bytes(name);
  return Float32Array.from({ length: b.length / 2 }, (_, i) => new Float32Array(Uint32Array.of((b[2 * i] | (b[2 * i + 1] << 8)) << 16).buffer)[0]);
};
const L: BaselineV41 = {
  hidden: D, hc, cols, headDim, eps: layer.config.rmsNormEps,
  embed: bytes('embed.weight'), embedScale: bytes('embed.scale'), wkv: bytes('wkv.weight'), wkvScale: bytes('wkv.scale'),
  qWeight: bf16('q_weight'), kWeight: bf16('k_weight'),
};
const smallIds = brownTokens(tokenizer, 4);
const smallRows = model.hashMapping.hashRows(smallIds, [1, 4], { layers: [1], output: 'int32' }).rowIds as Int32Array;
const smallStreams = random(4 * hc * D);
log('TypeScript layer on 1 x 4 tokens...');
const baseline = timeRuns(() => baselineV41Forward(L, smallStreams, smallRows, 4), 3, 0);
const nativeSmall = timeRuns(() => layer.forwardRows(smallStreams, smallRows, [1, 4]), RUNS);
const check = baselineV41Forward(L, smallStreams, smallRows, 4);
const mine = layer.forwardRows(smallStreams, smallRows, [1, 4]).output;
let worst = 0;
for (let i = 0; i < mine.length; i++) worst = Math.max(worst, Math.abs(mine[i] - check[i]) / (1 + Math.abs(check[i])));

// The numpy peer (bench/numpy_v41.py: the layer as a numpy user writes it) on the same
// checkpoint, in this run. Not in smoke mode: the test suite runs the smoke benchmarks, and
// Python stays out of it. With the AVX2 build forced, OpenBLAS is held to its AVX2
// (Haswell) kernels too, so both sides use the same instruction set.
let numpy: { peer: string; tokens_per_second: number } | undefined;
if (!SMOKE) {
  log('numpy peer (bench/numpy_v41.py)...');
  const avx2 = process.env.ENGRAM_CPU_KERNEL === 'avx2';
  const env = { ...process.env, ...(avx2 ? { OPENBLAS_CORETYPE: 'Haswell' } : {}) };
  const script = path.join(path.dirname(fileURLToPath(import.meta.url)), 'numpy_v41.py');
  const py = spawnSync('python3', [script, dir], { encoding: 'utf8', env, maxBuffer: 2 ** 24 });
  const line = py.status === 0 ? py.stdout.trim().split('\n').pop() : undefined;
  if (line) {
    numpy = JSON.parse(line) as { peer: string; tokens_per_second: number };
    if (avx2) numpy.peer += ' (OpenBLAS Haswell kernel)';
  } else log(`numpy peer not run: ${py.error?.message ?? py.stderr.slice(-400)}`);
}
const prefill1024 = runs[2];

const f = (x: number, d = 1) => x.toFixed(d);
const header =
  `# DeepSeek-V4.1 Engram layer\n\nReleased dimensions (D ${D}, hc ${hc}, ${cols} rows x ${headDim} fp8 per token, wkv [${(hc + 1) * D}, ${features}] fp8 with 32x32 UE8M0 blocks), ` +
  `synthetic checkpoint in the released layout with ${layer.table.rows.toLocaleString()} table rows (the release: 384,006,168), Brown Corpus tokens, ` +
  `${info.cpuThreads} threads, median of ${RUNS} runs; tokens/s include hashing. The rows are gathered inside the wkv GEMM's packing: ` +
  `gather ms is the time the threads spent there (summed over threads, divided by the threads used), wkv ms the rest of the GEMM.\n\n` +
  `Machine: ${facts.cpu}, ${facts.cores} cores, ${facts.memoryGiB} GiB, ${facts.platform}, Node ${facts.node}; CPU kernels: ${info.cpuKernel}; ` +
  `wkv kernel: ${layer.wkvKernel}; measured fp32 FMA peak ${f(fp32Peak, 0)} GFLOP/s` +
  (peak !== fp32Peak ? `, so ${f(peak, 0)} GFLOP/s for bf16 dot products (two products per lane per instruction)` : '') + '.\n\n';
const table = markdownTable(
  ['B x S', 'tokens/s', 'layer ms', 'hash ms', 'gather ms (in the wkv packing)', 'wkv ms', 'gate ms', 'wkv GFLOP/s', '/ peak'],
  runs.map((r) => [r.shape, f(r.tokensPerSecond, 0), f(r.layerMs, 2), f(r.hashMs, 2), f(r.gatherMs, 2), f(r.wkvMs, 2), f(r.gateMs, 2), f(r.wkvGflops, 0), `${f((100 * r.wkvGflops) / peak, 0)}%`]),
);
const gatherTable = markdownTable(
  ['B x S', 'gather alone, warm: GB/s', 'random rows, warm: GB/s', 'gather / random', 'gather alone, cold: GB/s', 'random rows, cold: GB/s', 'gather / random', 'separate pass writing fp32 rows: GB/s', '/ warm random', 'table in 8 row ranges, warm: GB/s', '/ one region'],
  runs.map((r) => [r.shape, f(r.packedWarmGBps, 2), f(r.randomRowGBps, 2), `${f((100 * r.packedWarmGBps) / r.randomRowGBps, 0)}%`, f(r.packedColdGBps, 2), f(r.coldRandomRowGBps, 2), `${f((100 * r.packedColdGBps) / r.coldRandomRowGBps, 0)}%`, f(r.gatherGBps, 2), `${f((100 * r.gatherGBps) / r.randomRowGBps, 0)}%`, f(r.splitWarmGBps, 2), `${f((100 * r.splitWarmGBps) / r.packedWarmGBps, 0)}%`]),
);
const peers = markdownTable(
  ['peer', 'tokens/s', 'native / peer'],
  [
    [`plain TypeScript layer (1 x 4 tokens; max rel. diff ${worst.toExponential(1)})`, f(4 / baseline.medianSeconds, 2), `${f(baseline.medianSeconds / nativeSmall.medianSeconds, 0)}x`],
    numpy
      ? [`${numpy.peer} (1 x 1024 prefill, bench/numpy_v41.py)`, f(numpy.tokens_per_second, 0), `${f(prefill1024.tokensPerSecond / numpy.tokens_per_second, 2)}x`]
      : [`numpy peer not run (${SMOKE ? 'smoke mode' : 'python3 with numpy not found'})`, 'not measured', ''],
  ],
);
const gatherNote =
  'The gather against random rows of the same table (264 bytes each: 256 fp8 codes and, in the scale tensor, 8 UE8M0 codes), all in GB/s of 264-byte rows. ' +
  '"Gather alone": the layer\'s rows decoded and packed exactly as the wkv GEMM packs them, without the GEMM (in the layer it shares the memory bus with the other core\'s GEMM, which the in-packing ms above include). ' +
  'Random rows: as many uniformly random rows read with the same prefetching. Warm: runs back to back (the page-table entries of the 0.5 GiB table stay cached); ' +
  'cold: each run after writing 256 MiB of other memory, as the gather finds its rows after the GEMM. ' +
  'The separate pass is the two-step path a caller gets with `returnRows` (fp32 rows written out, 4 bytes per code). ' +
  '"8 row ranges": the same gather over the same bytes seen as 8 regions, as a table split over model{rank}-mp8 rank files is read in place (a binary search per row), interleaved run by run with the one-region gather.\n\n';
const placementTable = markdownTable(
  ['table (1 x 4096)', 'layer tokens/s', 'gather ms (in the wkv packing)'],
  [
    ['memory-mapped checkpoint (page cache, 4 KiB pages)', f(placement.mapped.tokensPerSecond, 0), f(placement.mapped.gatherMs, 1)],
    ["copied into process memory, huge pages (tier 'host', copy: true)", f(placement.copied.tokensPerSecond, 0), f(placement.copied.gatherMs, 1)],
  ],
);
const placementNote =
  'Where the table lives, interleaved run by run: rows read through the file mapping pay a page walk per random row once the GEMM has evicted the page tables ' +
  '(on a VM, a two-level walk); a copy on transparent huge pages needs 512 times fewer translations.\n\n';
const md = header + table + '\n' + gatherNote + gatherTable + '\n' + placementNote + placementTable + '\n' + peers;
console.log(md);
writeResults('v41', { benchmark: 'v41', date: new Date().toISOString(), machine: facts, cpuKernel: info.cpuKernel, rowsScale: ROWS_SCALE, runs: RUNS, wkvKernel: layer.wkvKernel, fp32PeakGflops: fp32Peak, peakGflops: peak, results: runs, tablePlacement: placement, baselineTokensPerSecond: 4 / baseline.medianSeconds, baselineMaxRelDiff: worst, numpy }, md);
