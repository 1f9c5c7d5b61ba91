// npm run bench:async — what async calls pay to be safe against buffers detached while
// they run. An async call copies the typed arrays JS owns into native memory when it
// starts (and written ones back when it ends); the addon's own memory (outputs of earlier
// calls, allocateFloat32, mappings) is pinned at no copy. Each call is timed as a user
// writes it (plain JS arrays in, default outputs) against the identical call whose
// inputs lie in the addon's memory, interleaved in one process; the difference is the
// copies' cost.
import fs from 'node:fs';
import path from 'node:path';

import { allocateFloat32, allocateInt32, buildInfo, CompressedTokenizer, DeepseekV41EngramModel, Engram, MoE, NgramHashMapping, writeSyntheticV41Checkpoint, type Tensor } from '../src/index.js';
import { native } from '../src/native/index.js';

/** The addon's count of what async calls copied. */
const copies = () => native().stagingStats();
import { machineFacts, progress } from '../src/core/throughput.js';
import { markdownTable, smokeOr, writeResults } from './harness.js';

const RUNS = smokeOr(Number(process.env.BENCH_RUNS ?? 15), 1);
const info = buildInfo();
const facts = machineFacts();
const log = (s: string) => process.stderr.write(`${s}\n`);
const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];
const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

/** The same values in the addon's memory (pinned by async calls, never copied). */
function owned<T extends Int32Array | Float32Array>(a: T): T {
  const copy = (a instanceof Int32Array ? allocateInt32(a.length) : allocateFloat32(a.length)) as T;
  copy.set(a as never);
  return copy;
}

interface Row {
  call: string;
  stagedKiB: number;
  userMs: number;
  pinnedMs: number;
  copyMs: number;
  lateMs: number;
  share: number;
  overhead: number;
}
const rows: Row[] = [];
/**
 * Each call's total time, the two variants interleaved; and the time the call as written
 * spent on its copies (allocating, copying in, copying back), as the addon counts it:
 * a steadier figure than the difference of two noisy totals. The share is that time over
 * the pinned call's total.
 */
async function record(call: string, user: () => Promise<unknown>, pinned: () => Promise<unknown>) {
  await user();
  await pinned();
  const total = { user: [] as number[], pinned: [] as number[] };
  let copySeconds = 0;
  let lateSeconds = 0;
  let copiedBytes = 0;
  for (let i = 0; i < RUNS; i++) {
    // Alternate which goes first, so neither always meets the other's warm caches.
    const order = i % 2 === 0 ? (['user', 'pinned'] as const) : (['pinned', 'user'] as const);
    for (const which of order) {
      const before = copies();
      const t0 = performance.now();
      await (which === 'user' ? user : pinned)();
      total[which].push(performance.now() - t0);
      const after = copies();
      if (which === 'user') {
        copySeconds += after.seconds - before.seconds - (after.lateSeconds - before.lateSeconds);
        lateSeconds += after.lateSeconds - before.lateSeconds;
        copiedBytes += after.bytes - before.bytes;
      }
      await turn();
    }
  }
  const copyMs = (1000 * copySeconds) / RUNS;
  const lateMs = (1000 * lateSeconds) / RUNS;
  const stagedKiB = copiedBytes / RUNS / 1024;
  const row = { call, stagedKiB, userMs: median(total.user), pinnedMs: median(total.pinned), copyMs, lateMs, share: copyMs / median(total.pinned), overhead: median(total.user) / median(total.pinned) - 1 };
  rows.push(row);
  log(`  ${call}: ${row.userMs.toFixed(3)} ms as written vs ${row.pinnedMs.toFixed(3)} ms pinned; copies ${copyMs.toFixed(3)} ms (${(100 * row.share).toFixed(1)}%) + ${lateMs.toFixed(3)} ms while the worker ran, for ${stagedKiB.toFixed(0)} KiB`);
}

const tokenizer = CompressedTokenizer.deepseekV3();
const tokenIds = (n: number) => Int32Array.from({ length: n }, (_, i) => (i * 104729) % tokenizer.vocabSize);

// Hashing (the reference's 2 layers x 16 heads): decode and prefill.
{
  const mapping = new NgramHashMapping({}, tokenizer);
  for (const [B, T] of smokeOr<Array<[number, number]>>([[16, 1], [8, 4096]], [[2, 64]])) {
    const ids = tokenIds(B * T);
    const ownedIds = owned(ids);
    await record(`hashRowsAsync ${B} x ${T}`, () => mapping.hashRowsAsync(ids, [B, T]), () => mapping.hashRowsAsync(ownedIds, [B, T]));
  }
}

// The paper's layer at the reference's dimensions (hc 4 x 1024).
{
  const config = smokeOr({ layerId: 1, engramVocabSize: [30011, 30011] }, { layerId: 1, layerIds: [1], hiddenSize: 64, hcMult: 2, nEmbedPerNgram: 64, nHeadPerNgram: 2, engramVocabSize: [3001, 3001] });
  const layer = new Engram(config, { tokenizer, tableDtype: 'bf16', seed: 1, device: 'cpu' });
  const g = layer.geometry;
  for (const [B, T] of smokeOr<Array<[number, number]>>([[16, 1], [1, 1024], [4, 1024]], [[1, 64]])) {
    const ids = tokenIds(B * T);
    const hidden = Float32Array.from({ length: B * T * g.hc * g.hidden }, (_, i) => Math.sin(i));
    const [ownedIds, ownedHidden] = [owned(ids), owned(hidden)];
    await record(`Engram.forwardAsync ${B} x ${T} (hidden ${g.hc} x ${g.hidden})`, () => layer.forwardAsync(hidden, ids, [B, T]), () => layer.forwardAsync(ownedHidden, ownedIds, [B, T]));
  }
}

// DeepSeek-V4.1's layer at the released dimensions (the bench:v41 checkpoint).
{
  const scale = smokeOr(0.005, 2e-5);
  const hiddenSize = smokeOr<number | undefined>(undefined, 256);
  const dir = path.join(process.env.ENGRAM_CACHE_DIR ?? '.cache', `bench-v41-${scale}${hiddenSize ? `-d${hiddenSize}` : ''}`);
  if (!fs.existsSync(path.join(dir, 'model.safetensors.index.json'))) {
    log(`writing a synthetic checkpoint (rows x ${scale}) to ${dir}...`);
    writeSyntheticV41Checkpoint(dir, { rowsScale: scale, hiddenSize, layerIds: [1], onProgress: progress('  layers') });
  }
  const model = DeepseekV41EngramModel.fromCheckpoint(dir, { device: 'cpu' });
  const layer = model.layers.get(1)!;
  const { hiddenSize: D, hcMult: hc } = layer.config;
  for (const [B, T] of smokeOr<Array<[number, number]>>([[64, 1], [1, 1024]], [[1, 16]])) {
    const ids = tokenIds(B * T);
    const streams = Float32Array.from({ length: B * T * hc * D }, (_, i) => Math.cos(i) * 0.1);
    const [ownedIds, ownedStreams] = [owned(ids), owned(streams)];
    await record(`DeepseekV41Engram.forwardAsync ${B} x ${T} (hidden ${hc} x ${D})`, () => layer.forwardAsync(streams, ids, [B, T]), () => layer.forwardAsync(ownedStreams, ownedIds, [B, T]));
  }
}

// An MoE block (V4.1-like routing, smaller experts so it fits the run).
{
  const [dim, ffn, experts] = smokeOr([2048, 512, 64], [64, 32, 8]);
  const moe = new MoE({ dim, numExperts: experts, ffnDim: ffn, topk: 6, routeScale: 1.5, scoreFunc: 'sqrtsoftplus', swigluLimit: 10 }, { device: 'cpu' });
  const t = (shape: number[], s: number): Tensor => ({ dtype: 'F32', shape, data: Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, (_, i) => Math.sin(i * 0.37 + s) * 0.02) });
  const dict: Record<string, Tensor> = { 'gate.weight': t([experts, dim], 0), 'gate.bias': t([experts], 1) };
  for (let e = 0; e < experts; e++) Object.assign(dict, { [`experts.${e}.w1.weight`]: t([ffn, dim], 3 * e), [`experts.${e}.w3.weight`]: t([ffn, dim], 3 * e + 1), [`experts.${e}.w2.weight`]: t([dim, ffn], 3 * e + 2) });
  moe.loadStateDict(dict);
  for (const tokens of smokeOr([64, 1024], [16])) {
    const x = Float32Array.from({ length: tokens * dim }, (_, i) => Math.cos(i * 0.01));
    const ownedX = owned(x);
    await record(`MoE.forwardAsync ${tokens} tokens (dim ${dim}, ${experts} experts x ${ffn}, top-6)`, () => moe.forwardAsync(x, [tokens, dim]), () => moe.forwardAsync(ownedX, [tokens, dim]));
  }
}

const md =
  `# Async calls: the cost of copying what JS owns\n\n` +
  `Machine: ${facts.cpu}, ${facts.cores} cores, ${facts.memoryGiB} GiB, CPU kernel ${info.cpuKernel}; medians of ${RUNS} interleaved runs, each followed by a turn of the event loop. ` +
  `"as written": the async call with plain JS typed arrays in and default outputs, which copies those inputs into native memory when it starts ` +
  `(JS could transfer them away while the worker reads them). "pinned": the same call with the same values in the addon's memory ` +
  `(outputs of earlier calls, \`allocateFloat32\`), which it pins instead. "copies": the time the call as written spent allocating its copies, copying in and copying results back ` +
  `(the addon's own count, a mean per call) before the worker starts, and its share of the pinned call's total; "copied while the worker ran": the copies made after the worker was queued, ` +
  `while it runs the work that does not read them (the paper layer gathers and projects before its gates read the hidden states); the totals' ratio is noisier on this 2-core machine.\n\n` +
  markdownTable(
    ['call', 'KiB copied', 'as written ms', 'pinned ms', 'copies ms', 'copies / call', 'copied while the worker ran ms', 'totals ratio'],
    rows.map((r) => [r.call, r.stagedKiB.toFixed(0), r.userMs.toFixed(3), r.pinnedMs.toFixed(3), r.copyMs.toFixed(3), `${(100 * r.share).toFixed(1)}%`, r.lateMs.toFixed(3), `${(100 * r.overhead).toFixed(1)}%`]),
  );
console.log(md);
writeResults('async-staging', { benchmark: 'async-staging', date: new Date().toISOString(), machine: facts, cpuKernel: info.cpuKernel, runs: RUNS, rows }, md);
