// npm run bench:forward — the paper's Engram layer at the reference dimensions (hidden
// 1024, hcMult 4, nEmbedPerNgram 512, 8 heads, max n-gram 3, 2 x 8 primes near 646,400
// rows per layer), B x T = 4 x 1024 Brown Corpus tokens: whole layer and per stage, the
// gather against this machine's random-row read bandwidth, the projections against its
// FMA peak, and the layer against a plain TypeScript layer and onnxruntime-node.
import * as ort from 'onnxruntime-node';

import { buildInfo, CompressedTokenizer, Engram, type TableDtype } from '../src/index.js';
import { native } from '../src/native/index.js';
import { machineFacts, median, progress, timeRuns } from '../src/core/throughput.js';
import { baselineForward } from '../test/reference/paper-layer.js';
import { brownTokens } from './corpus.js';
import { coldRowReads, markdownTable, measuredPeakGflops, SMOKE, smokeOr, writeResults } from './harness.js';
import { engramOnnxModel } from './onnx-engram.js';
import { baselineLayerOf } from '../test/helpers/forward-small.js';

const B = smokeOr(4, 1);
const T = smokeOr(1024, 256); // smoke: more tokens than any CPU build's GEMM row block
const RUNS = smokeOr(Number(process.env.BENCH_RUNS ?? 7), 1);
// Smoke mode: a toy layer of the same shape of config (the reference's is 2.6 GB of table).
const CONFIG = SMOKE ? { layerId: 1, layerIds: [1], hiddenSize: 64, hcMult: 2, nEmbedPerNgram: 64, nHeadPerNgram: 2, engramVocabSize: [3001, 3001] } : { layerId: 1 };
const BASELINE_T = smokeOr(64, 8); // the TypeScript layer is measured on B x 64 tokens (it is slow)
const info = buildInfo();
const threads = info.cpuThreads;
const facts = machineFacts();
const log = (s: string) => process.stderr.write(`${s}\n`);

const tokenizer = CompressedTokenizer.deepseekV3();
const ids = brownTokens(tokenizer, B * T);
const seeded = (n: number, seed: number) => {
  let a = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) / 4294967296) * 4 - 2;
  });
};

interface Row {
  table: TableDtype;
  wholeMs: number;
  tokensPerSecond: number;
  stages: Record<'hash' | 'gather' | 'projections' | 'gating' | 'conv', number>;
  gatherGBps: number;
  randomRowGBps: number;
  coldRandomRowGBps: number;
  separateGatherMs: number;
  packedWarmGBps: number;
  packedColdGBps: number;
  gemmGflops: number;
  baselineTokensPerSecond: number;
  nativeSmallTokensPerSecond: number;
  ortTokensPerSecond?: number;
  ortMaxRelError?: number;
}

const peak = measuredPeakGflops((seconds) => native().peakGflops({ threads, seconds }));
log(`FMA peak on ${threads} threads: ${peak.toFixed(0)} GFLOP/s`);
const results: Row[] = [];
let first: Engram | undefined;
for (const tableDtype of ['f32', 'bf16'] as const) {
  const t0 = performance.now();
  log(`building the layer with a ${tableDtype} table...`);
  const engram: Engram = first
    ? (() => {
        const e = new Engram(CONFIG, { tokenizer, hashMapping: first.hashMapping, init: 'none', tableDtype, device: 'cpu' });
        e.loadStateDict(first.stateDict());
        return e;
      })()
    : new Engram(CONFIG, { tokenizer, tableDtype, seed: 1, device: 'cpu' });
  first ??= engram;
  const g = engram.geometry;
  log(`  ${g.rows.toLocaleString()} rows x ${g.cols} (${(engram.table.byteLength / 2 ** 30).toFixed(2)} GiB) in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  const hidden = seeded(B * T * g.hc * g.hidden, 7);

  // Whole layer, and its stages from the same runs.
  const stageRuns: Float64Array[] = [];
  const out = new Float32Array(hidden.length); // reused, as a runtime would
  const show = progress(`  ${tableDtype}: layer run`);
  // Interleaved with each run: the same layer asked for its rows, which gathers them in a
  // separate pass first (the gather alone, as the yardstick below reads rows alone).
  const embeddings = new Float32Array(B * T * g.features);
  const separateRuns: Float64Array[] = [];
  const whole = timeRuns(() => {
    const stageSeconds = new Float64Array(4);
    engram.forward(hidden, ids, [B, T], { stageSeconds, out });
    stageRuns.push(stageSeconds);
  }, RUNS, 1, (i) => {
    show(i, RUNS);
    const stageSeconds = new Float64Array(4);
    engram.forward(hidden, ids, [B, T], { stageSeconds, out, returnEmbeddings: embeddings });
    separateRuns.push(stageSeconds);
  });
  const stage = (i: number) => median(stageRuns.slice(-RUNS).map((s) => s[i]));
  const separateGather = median(separateRuns.map((s) => s[0]));
  const hash = timeRuns(() => engram.hashMapping.hashRows(ids, [B, T], { layers: [1] }), RUNS);

  // Gather against random rows of the same size read from the same table: as many rows
  // as the layer gathers, uniformly spread (the layer's real-text rows repeat, which helps it).
  const rowBytes = g.cols * (tableDtype === 'f32' ? 4 : 2);
  const gathered = B * T * engram.hashMapping.headsPerLayer;
  let rs = 12345;
  // A fresh set of rows for every run (uniform over the table), so the yardstick reads
  // cold rows as the layer's gather does after the rest of the layer has run.
  const rowSets = Array.from({ length: RUNS * 3 + 2 }, () =>
    Int32Array.from({ length: gathered }, () => {
      rs = (Math.imul(rs, 1103515245) + 12345) >>> 0;
      return Math.floor((rs / 4294967296) * engram.table.rows);
    }),
  );
  let set = 0;
  const randomIds = rowSets[0];
  const reads = timeRuns(() => native().readRows({ ...engram.table.nativeArgs(), rowIds: rowSets[set++ % rowSets.length], threads: 0 }), RUNS * 3);
  const randomRowGBps = (randomIds.length * rowBytes) / reads.medianSeconds / 1e9;
  const coldReads = coldRowReads(() => native().readRows({ ...engram.table.nativeArgs(), rowIds: rowSets[set++ % rowSets.length], threads: 0 }), RUNS * 3);
  const coldRandomRowGBps = (randomIds.length * rowBytes) / coldReads / 1e9;
  const gatherGBps = (gathered * rowBytes) / separateGather / 1e9;
  // The layer's gather alone, as the projection GEMM packs it (no GEMM): on the rows of a
  // fresh chunk of text every run, as the yardstick reads fresh rows (the same rows run
  // after run would stay in the last-level cache).
  const text = brownTokens(tokenizer, B * T * (rowSets.length + 1));
  const layerSets = rowSets.map((_, i) => {
    const chunk = text.subarray(B * T * (i + 1), B * T * (i + 2));
    return engram.hashMapping.hashRows(chunk, [B, T], { layers: [1], output: 'int32' }).rowIds as Int32Array;
  });
  let layerSet = 0;
  const gatherArgs = () => ({ ...engram.table.nativeArgs(), rowIds: layerSets[layerSet++ % layerSets.length], tokens: B * T, rowsPerToken: engram.hashMapping.rowsPerToken, kernel: info.cpuKernel, threads: 0 });
  const packedWarm = timeRuns(() => native().gatherPacked(gatherArgs()), RUNS * 3).medianSeconds;
  const packedCold = coldRowReads(() => native().gatherPacked(gatherArgs()), RUNS * 3);
  const gemmGflops = (2 * B * T * g.features * (g.hc + 1) * g.hidden) / stage(1) / 1e9;

  // Plain TypeScript layer and the native layer on the same B x BASELINE_T tokens.
  const L = baselineLayerOf(engram);
  if (tableDtype === 'bf16') L.table = new Uint16Array(engram.table.region.buffer as ArrayBuffer, engram.table.region.byteOffset, g.rows * g.cols);
  const smallIds = ids.slice(0, B * BASELINE_T);
  const smallHidden = hidden.slice(0, B * BASELINE_T * g.hc * g.hidden);
  const smallRows = engram.hashMapping.hashRows(smallIds, [B, BASELINE_T], { layers: [1], output: 'int32' }).rowIds as Int32Array;
  log(`  ${tableDtype}: TypeScript layer on ${B} x ${BASELINE_T} tokens...`);
  const baseline = timeRuns(() => baselineForward(Float32Array, L, smallHidden, smallRows, B, BASELINE_T), 3, 0);
  const nativeSmall = timeRuns(() => engram.forward(smallHidden, smallIds, [B, BASELINE_T]), RUNS);

  const row: Row = {
    table: tableDtype,
    wholeMs: whole.medianSeconds * 1e3,
    tokensPerSecond: (B * T) / whole.medianSeconds,
    stages: { hash: hash.medianSeconds, gather: stage(0), projections: stage(1), gating: stage(2), conv: stage(3) },
    gatherGBps,
    separateGatherMs: separateGather * 1e3,
    packedWarmGBps: (gathered * rowBytes) / packedWarm / 1e9,
    packedColdGBps: (gathered * rowBytes) / packedCold / 1e9,
    randomRowGBps,
    coldRandomRowGBps,
    gemmGflops,
    baselineTokensPerSecond: (B * BASELINE_T) / baseline.medianSeconds,
    nativeSmallTokensPerSecond: (B * BASELINE_T) / nativeSmall.medianSeconds,
  };

  // onnxruntime-node, same layer as a graph, same threads (fp32 table: its JS API has no bf16 tensors).
  if (tableDtype === 'f32') {
    log('  onnxruntime-node session...');
    const session = await ort.InferenceSession.create(engramOnnxModel(L, B, T), { intraOpNumThreads: threads, interOpNumThreads: 1, graphOptimizationLevel: 'all' });
    const rows = engram.hashMapping.hashRows(ids, [B, T], { layers: [1], output: 'int32' }).rowIds as Int32Array;
    const feeds = {
      hidden_states: new ort.Tensor('float32', hidden, [B, T, g.hc, g.hidden]),
      row_ids: new ort.Tensor('int32', rows, [B, T, engram.hashMapping.headsPerLayer]),
      table: new ort.Tensor('float32', L.table as Float32Array, [g.rows, g.cols]),
    };
    const samples: number[] = [];
    let out: Float32Array | undefined;
    for (let i = 0; i < RUNS + 1; i++) {
      const s0 = performance.now();
      const r = await session.run(feeds);
      const hashS0 = performance.now();
      engram.hashMapping.hashRows(ids, [B, T], { layers: [1], output: 'int32' }); // ORT gets hashed ids: add the hash time
      if (i > 0) samples.push((hashS0 - s0 + performance.now() - hashS0) / 1e3);
      out = r.output.data as Float32Array;
    }
    const mine = engram.forward(hidden, ids, [B, T]).output;
    let worst = 0;
    for (let i = 0; i < mine.length; i++) worst = Math.max(worst, Math.abs(mine[i] - out![i]) / (1 + Math.abs(out![i])));
    row.ortTokensPerSecond = (B * T) / median(samples);
    row.ortMaxRelError = worst;
    await session.release();
  }
  results.push(row);
  log(`  ${tableDtype}: ${(row.tokensPerSecond / 1e3).toFixed(1)} k tokens/s`);
}

const f = (x: number, d = 1) => x.toFixed(d);
const ms = (s: number) => (s * 1e3).toFixed(2);
const header =
  `# Engram layer forward\n\nReference dimensions (hidden 1024, hcMult 4, nEmbedPerNgram 512, 8 heads x 2 orders, ` +
  `table ${first!.geometry.rows.toLocaleString()} rows x ${first!.geometry.cols}), B x T = ${B} x ${T} Brown Corpus tokens ` +
  `(DeepSeek-V3 tokenizer), ${threads} threads, median of ${RUNS} runs. The rows are gathered inside the projection GEMM's packing: ` +
  `gather ms is the time the threads spent there (summed over threads, divided by the threads used), projections ms the rest of the GEMM.\n\n` +
  `Machine: ${facts.cpu}, ${facts.cores} cores, ${facts.memoryGiB} GiB, ${facts.platform}, Node ${facts.node}; CPU kernels: ${info.cpuKernel}; ` +
  `measured FMA peak ${f(peak, 0)} GFLOP/s.\n\n`;
const layerTable = markdownTable(
  ['table', 'layer k tokens/s', 'layer ms', 'hash ms', 'gather ms (in the projection packing)', 'projections ms', 'gating ms', 'conv ms'],
  results.map((r) => [r.table, f(r.tokensPerSecond / 1e3), f(r.wholeMs, 1), ms(r.stages.hash), ms(r.stages.gather), ms(r.stages.projections), ms(r.stages.gating), ms(r.stages.conv)]),
);
const boundTable = markdownTable(
  ['table', 'gather alone, warm: GB/s', 'random rows, warm: GB/s', 'gather / random', 'gather alone, cold: GB/s', 'random rows, cold: GB/s', 'gather / random', 'separate pass writing fp32 rows: GB/s', '/ warm random', 'projection GFLOP/s', '/ FMA peak'],
  results.map((r) => [r.table, f(r.packedWarmGBps, 2), f(r.randomRowGBps, 2), `${f((100 * r.packedWarmGBps) / r.randomRowGBps, 0)}%`, f(r.packedColdGBps, 2), f(r.coldRandomRowGBps, 2), `${f((100 * r.packedColdGBps) / r.coldRandomRowGBps, 0)}%`, f(r.gatherGBps, 2), `${f((100 * r.gatherGBps) / r.randomRowGBps, 0)}%`, f(r.gemmGflops, 0), `${f((100 * r.gemmGflops) / peak, 0)}%`]),
);
const ratioTable = markdownTable(
  ['table', `vs TypeScript layer (${B} x ${BASELINE_T} tokens)`, 'vs onnxruntime-node (same threads, incl. hashing)', 'onnxruntime max rel. diff'],
  results.map((r) => [
    r.table,
    `${f(r.nativeSmallTokensPerSecond / r.baselineTokensPerSecond)}x (${f(r.nativeSmallTokensPerSecond / 1e3)}k vs ${f(r.baselineTokensPerSecond / 1e3, 2)}k tokens/s)`,
    r.ortTokensPerSecond ? `${f(r.tokensPerSecond / r.ortTokensPerSecond, 2)}x (${f(r.tokensPerSecond / 1e3)}k vs ${f(r.ortTokensPerSecond / 1e3)}k tokens/s)` : 'n/a (no bf16 tensors in its JS API)',
    r.ortMaxRelError === undefined ? '' : r.ortMaxRelError.toExponential(1),
  ]),
);
const boundNote =
  'The gather against random rows of the same size from the same table, in GB/s of stored rows. "Gather alone": the layer\'s rows decoded and packed exactly as the ' +
  'projection GEMM packs them, without the GEMM (in the layer it shares the memory bus with the other core\'s GEMM, which the in-packing ms above include). ' +
  'Random rows: as many uniformly random rows read with the same prefetching. Warm: runs back to back; cold: each run after writing 256 MiB of other memory, ' +
  'as the gather finds its rows after the GEMM. The separate pass is the two-step path a caller gets with `returnEmbeddings` (fp32 rows written out), interleaved with the layer runs.\n\n';
const md = header + layerTable + '\n' + boundNote + boundTable + '\n' + ratioTable;
console.log(md);
writeResults('forward', { benchmark: 'forward', date: new Date().toISOString(), machine: facts, cpuKernel: info.cpuKernel, threads, batch: B, seqLen: T, runs: RUNS, peakGflops: peak, results }, md);
