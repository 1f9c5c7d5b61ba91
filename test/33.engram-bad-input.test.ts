import { describe, expect, it } from 'vitest';

import { devices, Engram, type Tensor } from '../src/index.js';
import { small, smallConfig, smallEngram, smallInputs, smallStateDict } from './helpers/forward-small.js';

describe('Engram rejects bad input with clear errors and keeps its state', () => {
  const engram = smallEngram();
  const { hidden, ids, shape } = smallInputs();

  it('hidden states of the wrong length or type', () => {
    expect(() => engram.forward(hidden.subarray(1), ids, shape)).toThrow(RangeError);
    expect(() => engram.forward(hidden.subarray(1), ids, shape)).toThrow(/hiddenStates has 3071 elements but \[2, 12, 4, 32\] needs 3072/);
    expect(() => engram.forward(Array.from(hidden) as unknown as Float32Array, ids, shape)).toThrow(/hiddenStates must be a Float32Array/);
  });

  it('ids that do not match the shape or the vocabulary', () => {
    expect(() => engram.forward(hidden, ids.subarray(1), shape)).toThrow(/inputIds has 23 elements but the shape needs 24/);
    const bad = ids.slice();
    bad[5] = 1 << 30;
    expect(() => engram.forward(hidden, bad, shape)).toThrow(/inputIds\[5\] = 1073741824 is outside the tokenizer's vocabulary/);
    expect(() => engram.forward(hidden, ids, [2, -12] as [number, number])).toThrow(RangeError);
  });

  it('NaN and Inf in hidden states propagate to that token and never crash', () => {
    const h = hidden.slice();
    h[0] = NaN; // token 0, branch 0
    h[32 * 4 * 3 + 32] = Infinity; // token 3, branch 1
    const r = engram.forward(h, ids, shape);
    expect(r.gates[0]).toBeNaN();
    expect(r.gates[3 * 4 + 1]).toBeNaN();
    expect(Number.isFinite(r.gates[1])).toBe(true);
    expect(Number.isFinite(r.output[32 * 4 * 2])).toBe(true); // token 2 of sequence 0 never sees them through the conv (dilation 3)
  });

  it('a state dict from another config names the tensor and both shapes; the old weights stay', () => {
    const before = engram.forward(hidden, ids, shape).output;
    const dict = smallStateDict();
    const wrong: Record<string, Tensor> = { ...dict, 'value_proj.weight': { ...dict['value_proj.weight'], shape: [16, 128] } };
    expect(() => engram.loadStateDict(wrong)).toThrow(/tensor 'value_proj.weight' has shape \[16, 128\] but the layer expects \[32, 64\]/);
    const missing = { ...dict };
    delete missing['norm2.3.weight'];
    expect(() => engram.loadStateDict(missing)).toThrow(/state dict is missing tensor 'norm2.3.weight' \(expected shape \[32\]\)/);
    expect(() => engram.loadStateDict({ ...dict, 'norm3.0.weight': dict['norm1.0.weight'] })).toThrow(/unexpected tensor 'norm3.0.weight'/);
    expect(() => engram.loadStateDict({ ...dict, 'norm1.0.weight': { dtype: 'I64', shape: [32], data: new BigInt64Array(32) } })).toThrow(
      /tensor 'norm1.0.weight' must be F32, F16, BF16 or F64, got "I64"/,
    );
    expect(() => engram.loadStateDict({ ...dict, 'norm1.0.weight': { dtype: 'F32', shape: [32], data: new Float32Array(31) } })).toThrow(
      /tensor 'norm1.0.weight' has 124 bytes but F32 \[32\] needs 128/,
    );
    const nanNorm = new Float32Array(32).fill(1);
    nanNorm[7] = NaN;
    expect(() => engram.loadStateDict({ ...dict, 'norm1.0.weight': { dtype: 'F32', shape: [32], data: nanNorm } })).toThrow(/tensor 'norm1.0.weight' holds NaN at index 7: weights must be finite/);
    const after = engram.forward(hidden, ids, shape).output;
    expect(Buffer.compare(Buffer.from(after.buffer), Buffer.from(before.buffer))).toBe(0);
  });

  it('a layer prefix selects the layer\'s tensors', () => {
    const e = smallEngram();
    const prefixed = Object.fromEntries(Object.entries(smallStateDict()).map(([k, v]) => [`layers.1.engram.${k}`, v]));
    e.loadStateDict(prefixed, { prefix: 'layers.1.engram.' });
    expect(() => e.loadStateDict(prefixed)).toThrow(/unexpected tensor 'layers.1.engram/);
  });

  it('bad options and configs', () => {
    expect(() => new Engram({ ...smallConfig(), layerId: 7 })).toThrow(/config.layerId = 7 is not one of config.layerIds \[1\]/);
    expect(() => new Engram({ ...smallConfig(), nEmbedPerNgram: 30 })).toThrow(/nEmbedPerNgram \(30\) must be a multiple of nHeadPerNgram \(4\)/);
    expect(() => new Engram(smallConfig(), { tableDtype: 'int4' as never })).toThrow(/options.tableDtype must be one of/);
    expect(() => new Engram(smallConfig(), { device: 'tpu' as never })).toThrow(/options.device must be 'cpu', 'cuda' or 'auto'/);
    if (devices().length === 0) expect(() => new Engram(smallConfig(), { device: 'cuda' })).toThrow(/device 'cuda' was requested but no CUDA device is available/);
    expect(() => engram.forward(hidden, ids, shape, { threads: 0 })).toThrow(/options.threads must be in \[1, 4096\], got 0/);
    expect(() => engram.forward(hidden, ids, shape, { state: engram.newState(3) })).toThrow(/options.state holds 3 sequences/);
    expect(() => engram.step({} as never, hidden.subarray(0, 128), [1])).toThrow(/state must come from engram.newState/);
    expect(() => new Engram(smallConfig(), { init: 'none' }).forward(hidden, ids, shape)).toThrow(/has no weights yet/);
    expect(small.config.hidden_size).toBe(32);
  });
});

describe('streaming states from another layer', () => {
  it('a state of another hcMult (same batch) is refused naming the lengths it needs, not reset', async () => {
    const { CompressedTokenizer: Tok, Engram: Layer } = await import('../src/index.js');
    const tokenizer = Tok.deepseekV3();
    const base = { layerId: 1, layerIds: [1], hiddenSize: 32, nEmbedPerNgram: 64, nHeadPerNgram: 2, maxNgramSize: 3, engramVocabSize: [3001, 3001], kernelSize: 4 };
    const two = new Layer({ ...base, hcMult: 2 }, { tokenizer, seed: 1 });
    const one = new Layer({ ...base, hcMult: 1 }, { tokenizer, seed: 1 });
    const foreign = one.newState(1);
    const before = foreign.convHistory.slice();
    expect(() => two.forward(new Float32Array(4 * 2 * 32), [1, 2, 3, 4], [1, 4], { state: foreign })).toThrow(
      /options.state was made for a layer of another shape: its histories hold 2 n-gram and 288 conv values, this layer's need 2 \(\[1, 2\]\) and 576 \(\[1, 9, 2, 32\]\): use this layer's newState\(1\)/,
    );
    expect(Array.from(foreign.convHistory)).toEqual(Array.from(before));
    expect(() => two.forward(new Float32Array(8 * 2 * 32), [1, 2, 3, 4, 5, 6, 7, 8], [2, 4], { state: two.newState(1) })).toThrow(/options.state holds 1 sequences but the call has batch 2/);
  });
});

describe('bounded memory', () => {
  it('newState for an absurd batch is refused with the size it would take', async () => {
    const { CompressedTokenizer: Tok, Engram: Layer } = await import('../src/index.js');
    const layer = new Layer({ layerId: 1, layerIds: [1], hiddenSize: 64, hcMult: 2, nEmbedPerNgram: 64, nHeadPerNgram: 2, maxNgramSize: 3, engramVocabSize: [3001, 3001], kernelSize: 4 }, { tokenizer: Tok.deepseekV3(), seed: 1 });
    expect(() => layer.newState(2 ** 31 - 1)).toThrow(/newState\(2147483647\) would take [\d.]+ GiB of histories \(2147483647 x 9 x 2 x 64 conv values\): more than half of this machine's \d+ GiB/);
    expect(layer.newState(4).convHistory.length).toBe(4 * 9 * 2 * 64);
  });
});
