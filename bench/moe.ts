// npm run bench:moe — MoE routing, dispatch/combine and experts on 4096 tokens of dim
// 2048 with small experts (DeepSeek-V3-like: 256 experts, 8 groups, top-8; V4.1-like:
// 384 experts, top-6), then the paper's iso-parameter comparison at toy scale: a block
// with MoE only against one with half the experts plus an Engram layer holding the
// freed parameters (a systems comparison: parameters, activated parameters, tokens/s).
import { buildInfo, CompressedTokenizer, Engram, MoE, quantizeWeight, type MoeConfig, type Tensor, type WeightFormat } from '../src/index.js';
import { native, TABLE_DTYPE_CODES } from '../src/native/index.js';
import { machineFacts, median, timeRuns } from '../src/core/throughput.js';
import { brownTokens } from './corpus.js';
import { markdownTable, measuredPeakGflops, smokeOr, writeResults } from './harness.js';

const N = smokeOr(4096, 64);
const DIM = smokeOr(2048, 128);
const FFN = smokeOr(64, 16);
const RUNS = smokeOr(Number(process.env.BENCH_RUNS ?? 5), 1);
const info = buildInfo();
const facts = machineFacts();
const log = (s: string) => process.stderr.write(`${s}\n`);
const peak = measuredPeakGflops((seconds) => native().peakGflops({ threads: 0, seconds }));

function random(n: number, seed: number, scale: number): Float32Array {
  const out = new Float32Array(n);
  native().fillRandom({ table: out.buffer, tableByteOffset: 0, tableScalesByteOffset: 0, tableDtype: TABLE_DTYPE_CODES.f32, tableRows: n, tableCols: 1, seed, distribution: 'uniform', scale, threads: 0 });
  return out;
}

/** Expert weights stored as the checkpoint would hold them: F32, BF16, fp8 (32x32 blocks) or MXFP4. */
function expertTensors(name: string, w: Float32Array, shape: [number, number], format: WeightFormat): Record<string, Tensor> {
  if (format === 'f32') return { [`${name}.weight`]: { dtype: 'F32', shape, data: w } };
  const q = quantizeWeight(w, shape, format);
  const [n, k] = shape;
  const dtype = { bf16: 'BF16', f16: 'F16', e4m3: 'F8_E4M3', e2m1: 'U8' }[format] as Tensor['dtype'];
  const out: Record<string, Tensor> = { [`${name}.weight`]: { dtype, shape: format === 'e2m1' ? [n, k / 2] : shape, data: q.codes } };
  if (q.scales) out[`${name}.scale`] = { dtype: 'F8_E8M0', shape: [Math.ceil(n / q.blockRows), Math.ceil(k / 32)], data: q.scales };
  return out;
}

function buildMoe(config: MoeConfig, seed: number, format: WeightFormat = 'f32'): MoE {
  const moe = new MoE(config, { device: 'cpu' }); // the CPU backend's figures
  const t = (shape: number[], s: number, scale: number): Tensor => ({ dtype: 'F32', shape, data: random(shape.reduce((a, b) => a * b, 1), s, scale) });
  const dict: Record<string, Tensor> = { 'gate.weight': t([config.numExperts, DIM], seed, 0.05), 'gate.bias': t([config.numExperts], seed + 1, 0.01) };
  for (let e = 0; e < config.numExperts; e++) {
    Object.assign(dict, expertTensors(`experts.${e}.w1`, random(FFN * DIM, seed * 1000 + 3 * e, 0.02), [FFN, DIM], format));
    Object.assign(dict, expertTensors(`experts.${e}.w3`, random(FFN * DIM, seed * 1000 + 3 * e + 1, 0.02), [FFN, DIM], format));
    Object.assign(dict, expertTensors(`experts.${e}.w2`, random(DIM * FFN, seed * 1000 + 3 * e + 2, 0.1), [DIM, FFN], format));
  }
  moe.loadStateDict(dict);
  return moe;
}

const x = random(N * DIM, 99, 1);
// Copy bandwidth yardstick: one dispatch-sized copy.
const src = random(N * 8 * DIM, 5, 1);
const dst = new Float32Array(src.length);
const copy = timeRuns(() => dst.set(src), RUNS);
const copyGBps = (2 * src.byteLength) / copy.medianSeconds / 1e9; // read + write

const configs: Array<[string, MoeConfig]> = [
  ['DeepSeek-V3-like (256 experts, 8 groups keep 4, top-8, sigmoid + bias)', { dim: DIM, numExperts: 256, ffnDim: FFN, topk: 8, nGroups: 8, topkGroups: 4, routeScale: 2.5, scoreFunc: 'sigmoid' }],
  ['DeepSeek-V4.1-like (384 experts, top-6, sqrt-softplus + bias, swiglu limit 10)', { dim: DIM, numExperts: 384, ffnDim: FFN, topk: 6, routeScale: 1.5, scoreFunc: 'sqrtsoftplus', normEps: 1e-20, swigluLimit: 10 }],
];
const rows = configs.map(([label, config], i) => {
  log(`${label}: building...`);
  const moe = buildMoe(config, 10 + i);
  const stages: Float64Array[] = [];
  const route = timeRuns(() => moe.forward(x.subarray(0, DIM), [1, DIM]), 1, 0); // warm
  void route;
  const out = new Float32Array(N * DIM); // reused, as a runtime would
  const whole = timeRuns(() => {
    const stageSeconds = new Float64Array(3);
    moe.forward(x, [N, DIM], { stageSeconds, out });
    stages.push(stageSeconds);
  }, RUNS);
  const stage = (k: number) => median(stages.slice(-RUNS).map((s) => s[k]));
  const routing = whole.medianSeconds - stage(0) - stage(1) - stage(2);
  const k = config.topk;
  // Dispatch only sorts (token, slot) pairs: the experts read their token rows from x
  // while packing them. Combine reads every expert output row and writes the result.
  const moved = (N * k * DIM + N * DIM) * 4;
  const flops = 2 * N * k * (DIM * 2 * FFN + FFN * DIM);
  return {
    label,
    tokensPerSecond: N / whole.medianSeconds,
    routingMs: routing * 1e3,
    routingTokensPerSecond: N / routing,
    dispatchCombineMs: (stage(0) + stage(2)) * 1e3,
    dispatchCombineGBps: moved / (stage(0) + stage(2)) / 1e9,
    expertsMs: stage(1) * 1e3,
    expertGflops: flops / stage(1) / 1e9,
  };
});

// Expert weight formats on the V4.1-like block: prefill (all tokens) and decode (a few
// tokens, where the experts' weights stream from memory once per step).
const DECODE = 8;
const v41 = configs[1][1];
const formatRows = (['f32', 'bf16', 'e4m3', 'e2m1'] as const).map((format) => {
  log(`expert weights ${format}: building...`);
  const moe = buildMoe(v41, 11, format);
  const run = (tokens: number, runs: number) => {
    const stages: Float64Array[] = [];
    const out = new Float32Array(tokens * DIM);
    // Every run takes the next tokens of x, so decode steps touch other experts (whose
    // weights are then not in cache), as consecutive steps of a real decode do.
    let window = 0;
    const next = () => x.subarray(((window++ * tokens) % N) * DIM, ((window * tokens - 1) % N) * DIM + DIM);
    moe.forward(next(), [tokens, DIM], { out }); // warm
    const touched: number[] = [];
    timeRuns(() => {
      const stageSeconds = new Float64Array(3);
      touched.push(new Set(moe.forward(next(), [tokens, DIM], { stageSeconds, out }).route.indices).size);
      stages.push(stageSeconds);
    }, runs);
    return { seconds: median(stages.slice(-runs).map((st) => st[1])), touched: median(touched.slice(-runs)) };
  };
  const prefill = run(N, RUNS);
  const decode = run(DECODE, RUNS * 8);
  const perExpert = moe.expertBytes.routed / v41.numExperts;
  return {
    format,
    bytesPerExpert: perExpert,
    prefillMs: prefill.seconds * 1e3,
    prefillGflops: (2 * N * v41.topk * 3 * FFN * DIM) / prefill.seconds / 1e9,
    decodeMs: decode.seconds * 1e3,
    decodeExperts: decode.touched,
    decodeWeightGBps: (decode.touched * perExpert) / decode.seconds / 1e9,
  };
});

// Iso-parameter comparison (toy scale): MoE(256) vs MoE(128) + Engram with the freed parameters.
log('iso-parameter comparison...');
const expertParams = 3 * FFN * DIM;
const moeOnly = buildMoe({ dim: DIM, numExperts: 256, ffnDim: FFN, topk: 8, nGroups: 8, topkGroups: 4, routeScale: 2.5, scoreFunc: 'sigmoid' }, 40);
const moeHalf = buildMoe({ dim: DIM, numExperts: 128, ffnDim: FFN, topk: 8, nGroups: 8, topkGroups: 4, routeScale: 2.5, scoreFunc: 'sigmoid' }, 41);
const freed = 128 * expertParams;
const tokenizer = CompressedTokenizer.deepseekV3();
// 16 heads of rows x 64 channels hold the freed parameters.
const perHead = Math.round(freed / 64 / 16);
const engram = new Engram({ layerId: 1, layerIds: [1], hiddenSize: DIM, hcMult: 1, nEmbedPerNgram: 512, engramVocabSize: perHead }, { tokenizer, seed: 3, device: 'cpu' });
const ids = brownTokens(tokenizer, N);
const hidden = random(N * DIM, 7, 1);
const moeOut = new Float32Array(N * DIM);
const a = timeRuns(() => moeOnly.forward(x, [N, DIM], { out: moeOut }), RUNS);
const engramOut = new Float32Array(N * DIM);
const b = timeRuns(() => {
  moeHalf.forward(x, [N, DIM], { out: moeOut });
  engram.forward(hidden, ids, [1, N], { out: engramOut });
}, RUNS);
const g = engram.geometry;
const engramDense = (g.hc + 1) * g.hidden * g.features + g.hc * g.hidden * (3 + g.kernelSize);
const iso = [
  { block: 'MoE, 256 experts (top-8)', params: 256 * (expertParams + DIM), activated: 8 * expertParams + 256 * DIM, tokensPerSecond: N / a.medianSeconds },
  {
    block: `MoE, 128 experts (top-8) + Engram (${g.rows.toLocaleString()} rows x ${g.cols})`,
    params: 128 * (expertParams + DIM) + g.rows * g.cols + engramDense,
    activated: 8 * expertParams + 128 * DIM + engram.hashMapping.headsPerLayer * g.cols + engramDense,
    tokensPerSecond: N / b.medianSeconds,
  },
];

const f = (v: number, d = 1) => v.toFixed(d);
const header =
  `# MoE\n\n${N} tokens of dim ${DIM}, experts with ffn ${FFN} (SwiGLU), ${info.cpuThreads} threads, median of ${RUNS} runs.\n\n` +
  `Machine: ${facts.cpu}, ${facts.cores} cores, ${facts.memoryGiB} GiB, ${facts.platform}, Node ${facts.node}; CPU kernels: ${info.cpuKernel}; ` +
  `measured FMA peak ${f(peak, 0)} GFLOP/s; copy bandwidth (TypedArray.set, read + write) ${f(copyGBps)} GB/s.\n\n`;
const t1 = markdownTable(
  ['routing', 'block tokens/s', 'routing ms (gate GEMM + top-k)', 'routing tokens/s', 'dispatch + combine ms', 'GB/s', 'vs copy', 'experts ms', 'expert GFLOP/s', 'vs peak'],
  rows.map((r) => [r.label, f(r.tokensPerSecond, 0), f(r.routingMs, 2), f(r.routingTokensPerSecond / 1e3, 0) + 'k', f(r.dispatchCombineMs, 2), f(r.dispatchCombineGBps), `${f((100 * r.dispatchCombineGBps) / copyGBps, 0)}%`, f(r.expertsMs, 1), f(r.expertGflops, 0), `${f((100 * r.expertGflops) / peak, 0)}%`]),
);
const t2 = markdownTable(
  ['block', 'parameters', 'activated per token', 'tokens/s'],
  iso.map((r) => [r.block, `${f(r.params / 1e6)} M`, `${f(r.activated / 1e6, 2)} M`, f(r.tokensPerSecond, 0)]),
);
const formatNames = { f32: 'F32', bf16: 'BF16', e4m3: 'fp8 e4m3, 32x32 UE8M0 blocks', e2m1: 'MXFP4 (e2m1, UE8M0 per 32)' };
const t3 = markdownTable(
  ['expert weights', 'bytes per expert', `prefill ${N} tokens: experts ms`, 'GFLOP/s', `decode ${DECODE} tokens: experts ms`, 'experts touched', 'weights read GB/s', 'decode vs F32'],
  formatRows.map((r) => [formatNames[r.format], `${f(r.bytesPerExpert / 2 ** 10, 0)} KiB`, f(r.prefillMs, 1), f(r.prefillGflops, 0), f(r.decodeMs, 3), String(r.decodeExperts), f(r.decodeWeightGBps), `${f(formatRows[0].decodeMs / r.decodeMs, 2)}x`]),
);
const md = header + t1 + `\nExpert weight formats (the V4.1-like block; quantised weights stay in their codes and are decoded per panel slice inside the GEMM):\n\n` + t3 + '\nIso-parameter comparison (the Engram layer with hcMult 1 and hidden = dim; tokens/s of the whole block):\n\n' + t2;
console.log(md);
writeResults('moe', { benchmark: 'moe', date: new Date().toISOString(), machine: facts, cpuKernel: info.cpuKernel, tokens: N, dim: DIM, ffn: FFN, runs: RUNS, peakGflops: peak, copyGBps, results: rows, formats: formatRows, decodeTokens: DECODE, iso }, md);
