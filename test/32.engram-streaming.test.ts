import { describe, expect, it } from 'vitest';

import { CompressedTokenizer, Engram } from '../src/index.js';
import { smallConfig } from './helpers/forward-small.js';
import { randInt, rng } from './helpers/random.js';

const same = (a: Float32Array, b: Float32Array) => Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0;

describe('streaming decode gives exactly the rows of the full-sequence forward', () => {
  const tokenizer = CompressedTokenizer.deepseekV3();
  // hidden 40 and hcMult 3: 160 projection outputs, so the last GEMM panel is partial.
  const engram = new Engram({ ...smallConfig(), hiddenSize: 40, hcMult: 3, kernelSize: 3 }, { tokenizer, seed: 9 });
  const { hc, hidden } = engram.geometry;
  const B = 3;
  const T = 29;
  const r = rng(21);
  const ids = Int32Array.from({ length: B * T }, () => randInt(r, 0, tokenizer.vocabSize - 1));
  const hiddenStates = Float32Array.from({ length: B * T * hc * hidden }, () => r() * 6 - 3);
  const whole = engram.forward(hiddenStates, ids, [B, T]);
  const row = hc * hidden;

  // [B, T, ...] -> the [B, len, ...] slice starting at t0
  const sliceTokens = <A extends Float32Array | Int32Array>(a: A, width: number, t0: number, len: number): A => {
    const C = a.constructor as { new (n: number): A };
    const out = new C(B * len * width);
    for (let b = 0; b < B; b++) out.set(a.subarray((b * T + t0) * width, (b * T + t0 + len) * width), b * len * width);
    return out;
  };

  it('token by token (step) equals one call, bit for bit', () => {
    const state = engram.newState(B);
    for (let t = 0; t < T; t++) {
      const step = engram.step(state, sliceTokens(hiddenStates, row, t, 1), sliceTokens(ids, 1, t, 1));
      expect(same(step.output, sliceTokens(whole.output, row, t, 1))).toBe(true);
      expect(same(step.gates, sliceTokens(whole.gates, hc, t, 1))).toBe(true);
    }
  });

  it('chunked prefill (7, 1, 13, 8 tokens) equals one call, bit for bit', () => {
    const state = engram.newState(B);
    let t0 = 0;
    for (const len of [7, 1, 13, 8]) {
      const part = engram.forward(sliceTokens(hiddenStates, row, t0, len), sliceTokens(ids, 1, t0, len), [B, len], { state });
      expect(same(part.output, sliceTokens(whole.output, row, t0, len))).toBe(true);
      t0 += len;
    }
    expect(t0).toBe(T);
  });

  it('sequences in a batch are independent', () => {
    const one = engram.forward(hiddenStates.subarray(row * T, 2 * row * T), ids.subarray(T, 2 * T), [1, T]);
    expect(same(one.output, whole.output.subarray(row * T, 2 * row * T))).toBe(true);
  });

  it('an empty chunk leaves the state as it was', () => {
    const state = engram.newState(B);
    engram.forward(sliceTokens(hiddenStates, row, 0, 5), sliceTokens(ids, 1, 0, 5), [B, 5], { state });
    const before = { n: state.ngramHistory.slice(), c: state.convHistory.slice() };
    const empty = engram.forward(new Float32Array(0), new Int32Array(0), [B, 0], { state });
    expect(empty.output.length).toBe(0);
    expect(Array.from(state.ngramHistory)).toEqual(Array.from(before.n));
    expect(same(state.convHistory, before.c)).toBe(true);
  });
});
