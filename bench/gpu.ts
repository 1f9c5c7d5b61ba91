// npm run bench:gpu (and the GPU kit's benchmark step) — every CUDA op against the CPU
// backend in the same process, and against PyTorch on the same GPU where python3 has torch:
// hashing, the paper layer, DeepSeek-V4.1's layer (prefill and decode) and an MoE block.
// Where no CUDA device is visible the CPU half still runs, and the report says so.
//
//   --out DIR      where gpu.json and gpu.md go (default bench/results)
//   --quick        tiny shapes, one timed run (the kit's self-check; sanitizer-sized)
//   --no-peer      do not start python3 for the PyTorch peer
// Figures for the CUDA backend include the host<->device copies of inputs and outputs:
// every forward takes host arrays today.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { buildInfo, CompressedTokenizer, DeepseekV41EngramModel, devices, Engram, MoE, NgramHashMapping, writeSyntheticV41Checkpoint, type EngramConfig, type MoeConfig, type Tensor } from '../src/index.js';
import { machineFacts, median } from '../src/core/throughput.js';
import { markdownTable } from './harness.js';

const args = process.argv.slice(2);
const flag = (name: string) => args.includes(name);
const option = (name: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const here = path.dirname(fileURLToPath(import.meta.url));
const outDir = path.resolve(option('--out') ?? path.join(here, 'results'));
const quick = flag('--quick');
const runs = quick ? 1 : Number(process.env.BENCH_RUNS ?? 5);
const log = (s: string) => process.stderr.write(`${s}\n`);
const info = buildInfo();
const gpus = devices();
const gpu = gpus.length > 0;
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'engram-bench-gpu-'));
process.on('exit', () => fs.rmSync(scratch, { recursive: true, force: true }));

log(gpu ? `CUDA device: ${gpus[0].name} (sm_${gpus[0].computeCapability.replace('.', '')})` : `no CUDA device is visible (${info.deviceUnavailableReason}): the CPU half only`);

/** Median seconds of fn over `runs` timed runs after one warm-up (which also uploads weights). */
function seconds(fn: () => void): number {
  fn();
  const samples: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = process.hrtime.bigint();
    fn();
    samples.push(Number(process.hrtime.bigint() - t0) / 1e9);
  }
  return median(samples);
}

let seed = 12345;
const uniform = (n: number, scale = 2) => Float32Array.from({ length: n }, () => {
  seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
  return (seed / 4294967296 - 0.5) * scale;
});
const tokenIds = (n: number, vocab: number) => Int32Array.from({ length: n }, () => {
  seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
  return Math.floor((seed / 4294967296) * vocab);
});
function maxRelDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]) / (1 + Math.abs(b[i])));
  return worst;
}

/** What the PyTorch peer is asked to time on the same GPU. */
interface PeerWork {
  gemms: Array<{ name: string; m: number; k: number; n: number }>;
  gathers: Array<{ name: string; rows: number; rowBytes: number; count: number }>;
}
interface Case {
  op: string;
  shape: string;
  tokens: number;
  cpuSeconds: number;
  cudaSeconds: number | null;
  /** 'exact' or the largest |cuda - cpu| / (1 + |cpu|) */
  agreement: string | null;
  /** the PyTorch work this case is compared with, by name */
  peer?: { gemm?: string; gather?: string };
}
const cases: Case[] = [];
const peerWork: PeerWork = { gemms: [], gathers: [] };

function record(c: Omit<Case, 'tokens'> & { tokens: number }) {
  cases.push(c);
  const cudaText = c.cudaSeconds === null ? 'no device' : `${(c.cudaSeconds * 1e3).toFixed(3)} ms`;
  log(`  ${c.op} ${c.shape}: cpu ${(c.cpuSeconds * 1e3).toFixed(3)} ms, cuda ${cudaText}${c.agreement ? `, ${c.agreement}` : ''}`);
}

// 1. Hashing (the paper's default mapping: 2 layers, 2- and 3-grams, 8 heads).
const tokenizer = CompressedTokenizer.deepseekV3();
{
  log('hashing...');
  const mapping = new NgramHashMapping({}, tokenizer);
  const [B, T] = quick ? [2, 256] : [8, 4096];
  const ids = tokenIds(B * T, tokenizer.vocabSize);
  const cpuRows = mapping.hashRows(ids, [B, T], { device: 'cpu', output: 'int32' }).rowIds;
  const cpuSeconds = seconds(() => mapping.hashRows(ids, [B, T], { device: 'cpu', output: 'int32' }));
  let cudaSeconds: number | null = null;
  let agreement: string | null = null;
  if (gpu) {
    const rows = mapping.hashRows(ids, [B, T], { device: 'cuda', output: 'int32' }).rowIds;
    agreement = Buffer.compare(Buffer.from(rows.buffer), Buffer.from(cpuRows.buffer)) === 0 ? 'exact' : 'DIFFERENT ROW IDS';
    cudaSeconds = seconds(() => mapping.hashRows(ids, [B, T], { device: 'cuda', output: 'int32' }));
  }
  record({ op: 'hashRows (paper mapping)', shape: `${B} x ${T}`, tokens: B * T, cpuSeconds, cudaSeconds, agreement });
}

// 2. The paper's layer (reference dimensions, bf16 table; a toy layer with --quick).
{
  log('the paper layer...');
  const config: Partial<EngramConfig> = quick
    ? { layerId: 1, layerIds: [1], hiddenSize: 64, hcMult: 4, nEmbedPerNgram: 64, nHeadPerNgram: 2, maxNgramSize: 3, engramVocabSize: [3001, 3001], kernelSize: 4 }
    : { layerId: 1 };
  const cpu = new Engram(config, { tokenizer, tableDtype: 'bf16', seed: 1, device: 'cpu' });
  const cuda = gpu ? new Engram(config, { tokenizer, hashMapping: cpu.hashMapping, init: 'none', tableDtype: 'bf16', device: 'cuda' }) : undefined;
  cuda?.loadStateDict(cpu.stateDict());
  const g = cpu.geometry;
  const rowsPerToken = g.features / g.cols;
  peerWork.gathers.push({ name: 'paper table', rows: g.rows, rowBytes: g.cols * 2, count: 0 });
  for (const [B, T] of quick ? [[2, 32], [4, 1]] : [[4, 1024], [64, 1]]) {
    const ids = tokenIds(B * T, tokenizer.vocabSize);
    const hidden = uniform(B * T * g.hc * g.hidden);
    const want = cpu.forward(hidden, ids, [B, T]).output;
    const cpuSeconds = seconds(() => cpu.forward(hidden, ids, [B, T]));
    let cudaSeconds: number | null = null;
    let agreement: string | null = null;
    if (cuda) {
      agreement = `${maxRelDiff(cuda.forward(hidden, ids, [B, T]).output, want).toExponential(1)} rel`;
      cudaSeconds = seconds(() => cuda.forward(hidden, ids, [B, T]));
    }
    const name = `paper ${B}x${T}`;
    // The layer's projections: value_proj and the hc key projections, features -> hidden each.
    peerWork.gemms.push({ name, m: B * T, k: g.features, n: (g.hc + 1) * g.hidden });
    peerWork.gathers.push({ name, rows: g.rows, rowBytes: g.cols * 2, count: B * T * rowsPerToken });
    record({ op: 'paper Engram layer (bf16 table)', shape: `${B} x ${T}`, tokens: B * T, cpuSeconds, cudaSeconds, agreement, peer: { gemm: name, gather: name } });
  }
  peerWork.gathers.shift();
}

// 3. DeepSeek-V4.1's layer at the released dimensions (tables scaled down in rows).
{
  log('the V4.1 layer (writing a synthetic checkpoint)...');
  const dir = path.join(scratch, 'v41');
  writeSyntheticV41Checkpoint(dir, quick ? { rowsScale: 2e-5, hiddenSize: 64, hcMult: 4, layerIds: [1] } : { rowsScale: 0.002, layerIds: [1] });
  const cpu = DeepseekV41EngramModel.fromCheckpoint(dir, { device: 'cpu' });
  const cuda = gpu ? DeepseekV41EngramModel.fromCheckpoint(dir, { device: 'cuda' }) : undefined;
  const layer = cpu.layers.get(1)!;
  const { hiddenSize: D, hcMult: hc, headDim } = layer.config;
  const cols = layer.rowsPerToken;
  for (const [B, S] of quick ? [[1, 32], [4, 1]] : [[1, 1024], [64, 1]]) {
    const ids = tokenIds(B * S, tokenizer.vocabSize);
    const streams = new Map([[1, uniform(B * S * hc * D)]]);
    const want = cpu.forward(streams, ids, [B, S]).outputs.get(1)!.output;
    const cpuSeconds = seconds(() => cpu.forward(streams, ids, [B, S]));
    let cudaSeconds: number | null = null;
    let agreement: string | null = null;
    if (cuda) {
      agreement = `${maxRelDiff(cuda.forward(streams, ids, [B, S]).outputs.get(1)!.output, want).toExponential(1)} rel`;
      cudaSeconds = seconds(() => cuda.forward(streams, ids, [B, S]));
    }
    const name = `v41 ${B}x${S}`;
    peerWork.gemms.push({ name, m: B * S, k: cols * headDim, n: (hc + 1) * D });
    peerWork.gathers.push({ name, rows: layer.table.rows, rowBytes: headDim + headDim / 32, count: B * S * cols });
    record({ op: 'V4.1 Engram layer (fp8 table, fp8 wkv)', shape: `${B} x ${S}`, tokens: B * S, cpuSeconds, cudaSeconds, agreement, peer: { gemm: name, gather: name } });
  }
}

// 4. An MoE block (V4.1-like routing: 384 experts, top-6, sqrt-softplus; small experts).
{
  log('the MoE block...');
  const dim = quick ? 64 : 2048;
  const config: MoeConfig = { dim, numExperts: quick ? 16 : 384, ffnDim: quick ? 16 : 64, topk: 6, routeScale: 1.5, scoreFunc: 'sqrtsoftplus', normEps: 1e-20, swigluLimit: 10 };
  const t = (shape: number[], scale: number): Tensor => ({ dtype: 'F32', shape, data: uniform(shape.reduce((a, b) => a * b, 1), scale) });
  const dict: Record<string, Tensor> = { 'gate.weight': t([config.numExperts, dim], 0.1), 'gate.bias': t([config.numExperts], 0.02) };
  for (let e = 0; e < config.numExperts; e++) {
    dict[`experts.${e}.w1.weight`] = t([config.ffnDim, dim], 0.04);
    dict[`experts.${e}.w3.weight`] = t([config.ffnDim, dim], 0.04);
    dict[`experts.${e}.w2.weight`] = t([dim, config.ffnDim], 0.2);
  }
  const cpu = new MoE(config, { device: 'cpu' });
  cpu.loadStateDict(dict);
  const cuda = gpu ? new MoE(config, { device: 'cuda' }) : undefined;
  cuda?.loadStateDict(dict);
  for (const N of quick ? [4, 64] : [8, 1024]) {
    const x = uniform(N * dim);
    const want = cpu.forward(x, [N, dim]);
    const cpuSeconds = seconds(() => cpu.forward(x, [N, dim]));
    let cudaSeconds: number | null = null;
    let agreement: string | null = null;
    if (cuda) {
      const got = cuda.forward(x, [N, dim]);
      const sameExperts = Buffer.compare(Buffer.from(got.route.indices.buffer), Buffer.from(want.route.indices.buffer)) === 0;
      agreement = `${sameExperts ? 'experts exact' : 'EXPERTS DIFFER'}, ${maxRelDiff(got.output, want.output).toExponential(1)} rel`;
      cudaSeconds = seconds(() => cuda.forward(x, [N, dim]));
    }
    record({ op: 'MoE block (F32 experts)', shape: `${N} x ${dim}`, tokens: N, cpuSeconds, cudaSeconds, agreement });
  }
}

// The PyTorch peer on the same GPU, in the same run: bf16 torch.matmul on each case's GEMM
// shape, index_select of as many rows of a table of the same geometry, and the copy rates.
interface PeerResult {
  torch?: string;
  device?: string;
  gemms?: Record<string, { ms: number; tflops: number }>;
  gathers?: Record<string, { ms: number; gbps: number }>;
  copy?: { d2dGBps: number; h2dPinnedGBps: number; d2hPinnedGBps: number };
  error?: string;
}
let peer: PeerResult | null = null;
let peerNote = '';
if (!gpu) peerNote = 'not run: no CUDA device';
else if (flag('--no-peer')) peerNote = 'not run: --no-peer';
else {
  const work = path.join(scratch, 'peer-work.json');
  const result = path.join(scratch, 'peer-result.json');
  fs.writeFileSync(work, JSON.stringify({ ...peerWork, quick }));
  log('the PyTorch peer...');
  const r = spawnSync('python3', [path.join(here, 'torch_peer.py'), work, result], { stdio: ['ignore', 'inherit', 'inherit'], timeout: 240_000 });
  if (r.error) peerNote = `not run: ${r.error.message}`;
  else if (fs.existsSync(result)) peer = JSON.parse(fs.readFileSync(result, 'utf8')) as PeerResult;
  else peerNote = `python3 torch_peer.py exited with ${r.status ?? r.signal}`;
  if (peer?.error) peerNote = peer.error;
}

const facts = machineFacts();
const ms = (s: number | null) => (s === null ? '–' : (s * 1e3).toFixed(3));
const rows = cases.map((c) => {
  const gemm = c.peer?.gemm ? peer?.gemms?.[c.peer.gemm] : undefined;
  const gather = c.peer?.gather ? peer?.gathers?.[c.peer.gather] : undefined;
  const peerMs = gemm || gather ? (gemm?.ms ?? 0) + (gather?.ms ?? 0) : undefined;
  return [
    c.op,
    c.shape,
    ms(c.cpuSeconds),
    ms(c.cudaSeconds),
    c.cudaSeconds === null ? '–' : `${(c.cpuSeconds / c.cudaSeconds).toFixed(1)}x`,
    c.cudaSeconds === null ? '–' : Math.round(c.tokens / c.cudaSeconds).toLocaleString('en-US'),
    c.agreement ?? '–',
    peerMs === undefined ? '–' : peerMs.toFixed(3),
    peerMs === undefined || c.cudaSeconds === null ? '–' : `${(peerMs / (c.cudaSeconds * 1e3)).toFixed(2)}`,
  ];
});
const gpuName = gpu ? `${gpus[0].name} (sm_${gpus[0].computeCapability.replace('.', '')}, ${(gpus[0].totalMemory / 2 ** 30).toFixed(0)} GiB)` : `none (${info.deviceUnavailableReason})`;
const md = [
  '# GPU benchmark: CUDA backend against the CPU backend and PyTorch',
  '',
  `Written by \`bench/gpu.ts\`${quick ? ' in --quick mode (tiny shapes, one run: a check, not a measurement)' : ''}, ${new Date().toISOString().slice(0, 10)}.`,
  `CPU: ${facts.cpu}, ${facts.cores} cores, kernel ${info.cpuKernel}. GPU: ${gpuName}. PyTorch peer: ${peer?.torch ? `torch ${peer.torch} on ${peer.device}` : peerNote}.`,
  'Times are medians; the CUDA figures include copying inputs to the device and outputs back (every forward takes host arrays today).',
  '"vs PyTorch" is the time PyTorch takes for the same GEMM (bf16 torch.matmul) plus the same gather (index_select of as many rows from a table of the same geometry), divided by our whole CUDA call: above 1 means faster than those two PyTorch ops alone.',
  '',
  markdownTable(['op', 'shape', 'CPU ms', 'CUDA ms', 'CUDA speedup', 'CUDA tokens/s', 'CUDA vs CPU', 'PyTorch ms', 'vs PyTorch'], rows),
  ...(peer?.gemms
    ? [
        '## PyTorch on the same GPU',
        '',
        markdownTable(['GEMM (bf16 torch.matmul)', 'm x k x n', 'ms', 'TFLOP/s'], peerWork.gemms.map((w) => [w.name, `${w.m} x ${w.k} x ${w.n}`, peer!.gemms![w.name]?.ms.toFixed(3) ?? '–', peer!.gemms![w.name]?.tflops.toFixed(1) ?? '–'])),
        markdownTable(['gather (index_select)', 'table rows x bytes', 'rows read', 'ms', 'GB/s'], peerWork.gathers.map((w) => [w.name, `${w.rows} x ${w.rowBytes}`, w.count, peer!.gathers![w.name]?.ms.toFixed(3) ?? '–', peer!.gathers![w.name]?.gbps.toFixed(0) ?? '–'])),
        peer.copy ? `Copy rates: device to device ${peer.copy.d2dGBps.toFixed(0)} GB/s, pinned host to device ${peer.copy.h2dPinnedGBps.toFixed(1)} GB/s, device to pinned host ${peer.copy.d2hPinnedGBps.toFixed(1)} GB/s.\n` : '',
      ]
    : []),
].join('\n');
fs.mkdirSync(outDir, { recursive: true });
fs.writeFileSync(path.join(outDir, 'gpu.json'), JSON.stringify({ quick, machine: { ...facts, cpuKernel: info.cpuKernel }, gpu: gpu ? gpus[0] : null, deviceUnavailableReason: gpu ? null : info.deviceUnavailableReason, cases, peerWork, peer, peerNote }, null, 1) + '\n');
fs.writeFileSync(path.join(outDir, 'gpu.md'), md);
log(`wrote ${path.join(outDir, 'gpu.md')}`);
