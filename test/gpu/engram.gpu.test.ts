// GPU suite for the Engram layer: runs where a CUDA device is visible, says so otherwise.
import { describe, expect, it } from 'vitest';

import { Engram } from '../../src/index.js';
import { gpuVisible } from '../helpers/gpu.js';
import { maxRelError, small, smallConfig, smallInputs, smallStateDict } from '../helpers/forward-small.js';
import { randInt, rng } from '../helpers/random.js';

const visible = gpuVisible('Engram');

describe.skipIf(!visible)('CUDA Engram layer', () => {
  const { hidden, ids, shape } = smallInputs();
  const load = (options: ConstructorParameters<typeof Engram>[1]) => {
    const e = new Engram(smallConfig(), { init: 'none', ...options });
    e.loadStateDict(smallStateDict());
    return e;
  };

  it('equals the reference (forward-small.json), embeddings exactly', () => {
    const engram = load({ device: 'cuda' });
    expect(engram.device).toBe('cuda');
    const r = engram.forward(hidden, ids, shape, { returnEmbeddings: true });
    expect(Array.from(r.embeddings!)).toEqual(Array.from(Float32Array.from(small.embeddings)));
    expect(maxRelError(r.gates, small.gates)).toBeLessThan(1e-4);
    expect(maxRelError(r.output, small.output)).toBeLessThan(1e-4);
  });

  for (const tableDtype of ['bf16', 'f16'] as const) {
    it(`${tableDtype} table: CUDA equals the CPU backend within tolerance`, () => {
      const cpu = load({ device: 'cpu', tableDtype }).forward(hidden, ids, shape);
      const gpu = load({ device: 'cuda', tableDtype }).forward(hidden, ids, shape);
      expect(maxRelError(gpu.output, cpu.output)).toBeLessThan(1e-4);
    });
  }

  it('token-by-token decode on the GPU gives the bits of one GPU call', () => {
    const engram = load({ device: 'cuda' });
    const r = rng(5);
    const T = 9;
    const seqIds = Int32Array.from({ length: T }, () => randInt(r, 0, 128_000));
    const h = Float32Array.from({ length: T * 128 }, () => r() * 2 - 1);
    const whole = engram.forward(h, seqIds, [1, T]).output;
    const state = engram.newState(1);
    for (let t = 0; t < T; t++) {
      const out = engram.step(state, h.subarray(t * 128, (t + 1) * 128), seqIds.subarray(t, t + 1)).output;
      expect(Buffer.compare(Buffer.from(out.buffer), Buffer.from(whole.buffer, t * 512, 512))).toBe(0);
    }
  });
});
