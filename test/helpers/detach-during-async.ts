// Run by 25.detached-buffers.test.ts in its own process (with --expose-gc): async calls
// whose inputs or outputs JS transfers away (structuredClone with a transfer list) and
// collects while the work runs. Each call must give the bits of the same call made
// synchronously, or fail with an error that says the buffer was detached; the process
// must survive. Prints one JSON line of what happened per kind.

import * as ek from '../../src/index.js';
import { native } from '../../src/native/index.js';

const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) throw new Error('run with --expose-gc');

/** Detaches the array's buffer the way postMessage does, drops the clone, collects, and churns the heap so freed memory is reused. */
function transferAway(a: ArrayBufferView): void {
  structuredClone(a.buffer, { transfer: [a.buffer as ArrayBuffer] });
  gc!();
  for (let i = 0; i < 8; i++) new Float32Array(a.byteLength / 4 + 1024).fill(NaN);
}
const sameBits = (a: ArrayBufferView, b: ArrayBufferView) =>
  a.byteLength === b.byteLength && Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0;
const detachedError = /detached/;

type Outcome = 'same' | 'detached-error' | 'wrong' | 'other-error';
async function outcome(p: Promise<ArrayBufferView>, want: ArrayBufferView, log: string[]): Promise<Outcome> {
  try {
    return sameBits(await p, want) ? 'same' : 'wrong';
  } catch (e) {
    if (detachedError.test(String(e))) return 'detached-error';
    log.push(String(e));
    return 'other-error';
  }
}

const tok = ek.CompressedTokenizer.fromLookup(Array.from({ length: 1000 }, (_, i) => i));
const S = 2048;
const ids = () => new Int32Array(S).map((_, i) => (i * 7) % 1000);

interface Case {
  sync: () => ArrayBufferView;
  // The async call with fresh JS-owned arrays; `victim` picks the one transferred away.
  start: (victim: 'input' | 'out') => { promise: Promise<ArrayBufferView>; input: ArrayBufferView; out: ArrayBufferView };
}

const mapping = new ek.NgramHashMapping({ engramVocabSize: 100003, maxNgramSize: 3, nHeadPerNgram: 8, layerIds: [1] }, tok);
const paper = new ek.Engram({ layerId: 1, layerIds: [1], hiddenSize: 64, hcMult: 2, nEmbedPerNgram: 128, nHeadPerNgram: 4, maxNgramSize: 3, engramVocabSize: [20011, 20011], kernelSize: 4 }, { tokenizer: tok, seed: 1 });
const hidden = () => Float32Array.from({ length: S * 2 * 64 }, (_, i) => Math.sin(i * 0.01));
const moe = new ek.MoE({ dim: 64, numExperts: 8, ffnDim: 128, topk: 2 }, { device: 'cpu' });
{
  const f = (shape: number[], seed: number) => ({ dtype: 'F32' as const, shape, data: Float32Array.from({ length: shape[0] * shape[1] }, (_, i) => Math.sin(i * 0.37 + seed) * 0.1) });
  const dict: Record<string, ReturnType<typeof f>> = { 'gate.weight': f([8, 64], 0) };
  for (let e = 0; e < 8; e++) Object.assign(dict, { [`experts.${e}.w1.weight`]: f([128, 64], e + 1), [`experts.${e}.w3.weight`]: f([128, 64], e + 2), [`experts.${e}.w2.weight`]: f([64, 128], e + 3) });
  moe.loadStateDict(dict);
}
const moeInput = () => Float32Array.from({ length: S * 64 }, (_, i) => Math.cos(i * 0.013));
const v41 = new ek.DeepseekV41Engram({ hiddenSize: 64, hcMult: 2, maxNgramSize: 2, nHeads: 2, headDim: 32, numEmbeddings: 4096 }, { device: 'cpu' });
{
  const f = (shape: number[]) => ({ dtype: 'F32' as const, shape, data: Float32Array.from({ length: shape[0] * shape[1] }, (_, i) => Math.sin(i * 0.11) * 0.05) });
  v41.loadStateDict({ 'embed.weight': f([4096, 32]), 'wkv.weight': f([192, 64]), q_weight: f([2, 64]), k_weight: f([2, 64]) });
}
const v41Rows = () => new Int32Array(S * 2).map((_, i) => (i * 7) % 4096);

const cases: Record<string, Case> = {
  hash: {
    sync: () => mapping.hashRows(ids(), [1, S]).rowIds,
    start: () => {
      const input = ids();
      const out = new Int32Array(S * mapping.rowsPerToken);
      return { promise: mapping.hashRowsAsync(input, [1, S], { out }).then((r) => r.rowIds), input, out };
    },
  },
  engram: {
    sync: () => paper.forward(hidden(), ids(), [1, S]).output,
    start: () => {
      const input = hidden();
      const out = new Float32Array(S * 2 * 64);
      return { promise: paper.forwardAsync(input, ids(), [1, S], { out }).then((r) => r.output), input, out };
    },
  },
  moe: {
    sync: () => moe.forward(moeInput(), [S, 64]).output,
    start: () => {
      const input = moeInput();
      const out = new Float32Array(S * 64);
      return { promise: moe.forwardAsync(input, [S, 64], { out }).then((r) => r.output), input, out };
    },
  },
  v41: {
    sync: () => v41.forwardRows(hidden(), v41Rows(), [1, S]).output,
    start: () => {
      const input = hidden();
      const out = new Float32Array(S * 2 * 64);
      return { promise: v41.forwardRowsAsync(input, v41Rows(), [1, S], { out }).then((r) => r.output), input, out };
    },
  },
};

const report: Record<string, unknown> = {};
for (const kind of process.argv.slice(2)) {
  if (kind === 'table') {
    // A table held in a JS ArrayBuffer: its buffer cannot be transferred away from under
    // the pager's copy thread and async forwards (Node 20 copies it, later versions refuse).
    const table = ek.EngramTable.allocate(4096, 32, 'f32');
    const buffer = table.region.buffer as ArrayBuffer;
    let refused = false;
    try {
      structuredClone(buffer, { transfer: [buffer] });
    } catch {
      refused = true;
    }
    report.table = { stillAttached: buffer.byteLength === 4096 * 32 * 4, refused };
    continue;
  }
  if (kind === 'owned') {
    // An output in the addon's memory (the pool's) given as `out`: Node refuses to detach
    // external ArrayBuffers (a transfer copies them), and the call also holds its own
    // share of the memory, so a transfer mid-call changes nothing.
    const want = cases.engram.sync();
    const big = new Float32Array(native().allocateOutput(S * 2 * 64 * 4));
    const p = paper.forwardAsync(hidden(), ids(), [1, S], { out: big });
    transferAway(big);
    let settled = 'resolved';
    await p.catch((e) => (settled = String(e)));
    report.owned = { settled, attached: big.length === S * 2 * 64, same: sameBits(big, want) };
    continue;
  }
  const c = cases[kind];
  const want = c.sync();
  const log: string[] = [];
  const tally: Record<string, Record<Outcome, number>> = {};
  for (const victim of ['input', 'out'] as const) {
    tally[victim] = { same: 0, 'detached-error': 0, wrong: 0, 'other-error': 0 };
    for (let round = 0; round < 6; round++) {
      const { promise, input, out } = c.start(victim);
      transferAway(victim === 'input' ? input : out);
      tally[victim][await outcome(promise, want, log)]++;
    }
  }
  // The same call with nothing transferred still gives the sync bits.
  const { promise } = c.start('input');
  report[kind] = { ...tally, untouched: await outcome(promise, want, log), errors: log.slice(0, 3) };
}
console.log(JSON.stringify({ report, stagedBytes: native().stagingStats().bytes }));
