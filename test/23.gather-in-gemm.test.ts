// The layers gather their table rows inside the projection GEMM's packing (no fp32 matrix
// of gathered rows). Asking for the rows takes the two-step path (gather, then GEMM):
// both must give the same bits, across row blocks and with table rows cut by the GEMM's
// k blocks (1024 inputs).
import { describe, expect, it } from 'vitest';

import { CompressedTokenizer, DeepseekV41Engram, Engram, type Tensor } from '../src/index.js';
import { native } from '../src/native/index.js';
import { rng, randInt } from './helpers/random.js';

const same = (a: Float32Array, b: Float32Array) => Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0;

describe('gathering inside the GEMM gives the bits of gathering first', () => {
  const tokenizer = CompressedTokenizer.deepseekV3();
  // 2 orders x 2 heads x 320 channels = 1280 inputs: the fourth row straddles input 1024.
  const config = { layerId: 1, layerIds: [1], hiddenSize: 32, hcMult: 2, nEmbedPerNgram: 640, nHeadPerNgram: 2, maxNgramSize: 3, engramVocabSize: [3001, 3001], kernelSize: 4 };
  for (const tableDtype of ['f32', 'bf16', 'f16', 'f8e4m3'] as const) {
    it(`the paper's layer, ${tableDtype} table, 3 row blocks`, () => {
      const engram = new Engram(config, { tokenizer, tableDtype, seed: 11 });
      const r = rng(3);
      const B = 2, T = 250;
      const hidden = Float32Array.from({ length: B * T * 2 * 32 }, () => r() * 2 - 1);
      const ids = Int32Array.from({ length: B * T }, () => randInt(r, 0, 5000));
      const fused = engram.forward(hidden, ids, [B, T]);
      const twoStep = engram.forward(hidden, ids, [B, T], { returnEmbeddings: true });
      // a caller's buffer for the rows is filled with the same rows
      const buffer = new Float32Array(twoStep.embeddings!.length);
      engram.forward(hidden, ids, [B, T], { returnEmbeddings: buffer });
      expect(same(buffer, twoStep.embeddings!)).toBe(true);
      expect(() => engram.forward(hidden, ids, [B, T], { returnEmbeddings: new Float32Array(3) })).toThrow(/options.returnEmbeddings must be a Float32Array of \d+ elements/);
      expect(same(fused.output, twoStep.output)).toBe(true);
      expect(same(fused.gates, twoStep.gates)).toBe(true);
      expect(same(engram.forward(hidden, ids, [B, T], { threads: 1 }).output, fused.output)).toBe(true);
    });
  }

  it("DeepSeek-V4.1's layer (fp8 rows, bf16 dot-product or fp32 kernel), rows cut at input 1024", () => {
    const r = rng(5);
    const D = 64, hc = 2, headDim = 320, nHeads = 2, rows = 5000, cols = 4;
    const features = cols * headDim;
    // fp8 codes without the NaN codes (0x7f, 0xff), scales near 2^0
    const codes = (n: number) => Uint8Array.from({ length: n }, () => { const c = randInt(r, 0, 253); return c >= 0x7f ? c + 1 : c; });
    const bf16 = (n: number) => Uint16Array.from({ length: n }, () => new Uint32Array(Float32Array.of(r() * 2 - 1).buffer)[0] >>> 16);
    const dict: Record<string, Tensor> = {
      'embed.weight': { dtype: 'F8_E4M3', shape: [rows, headDim], data: codes(rows * headDim) },
      'embed.scale': { dtype: 'F8_E8M0', shape: [rows, headDim / 32], data: Uint8Array.from({ length: rows * headDim / 32 }, () => randInt(r, 118, 124)) },
      'wkv.weight': { dtype: 'F8_E4M3', shape: [(hc + 1) * D, features], data: codes((hc + 1) * D * features) },
      'wkv.scale': { dtype: 'F8_E8M0', shape: [Math.ceil(((hc + 1) * D) / 32), features / 32], data: Uint8Array.from({ length: Math.ceil(((hc + 1) * D) / 32) * (features / 32) }, () => randInt(r, 115, 120)) },
      q_weight: { dtype: 'BF16', shape: [hc, D], data: bf16(hc * D) },
      k_weight: { dtype: 'BF16', shape: [hc, D], data: bf16(hc * D) },
    };
    const S = 450;
    const streams = Float32Array.from({ length: S * hc * D }, () => r() * 2 - 1);
    const rowIds = Int32Array.from({ length: S * cols }, () => randInt(r, 0, rows - 1));
    for (const wkvKernel of ['auto', 'fp32'] as const) {
      const layer = new DeepseekV41Engram({ hiddenSize: D, hcMult: hc, maxNgramSize: 3, nHeads, headDim, numEmbeddings: rows, rmsNormEps: 1e-6 }, { wkvKernel });
      layer.loadStateDict(dict);
      const fused = layer.forwardRows(streams, rowIds, [1, S]);
      const twoStep = layer.forwardRows(streams, rowIds, [1, S], { returnRows: true });
      const buffer = new Float32Array(twoStep.rows!.length);
      layer.forwardRows(streams, rowIds, [1, S], { returnRows: buffer });
      expect(same(buffer, twoStep.rows!)).toBe(true);
      expect(() => layer.forwardRows(streams, rowIds, [1, S], { returnRows: new Float32Array(5) })).toThrow(/options.returnRows must be a Float32Array of \d+ elements/);
      expect(same(fused.output, twoStep.output)).toBe(true);
      expect(same(layer.forwardRows(streams, rowIds, [1, S], { threads: 1 }).output, fused.output)).toBe(true);
    }
  });

  it("every fp8 code under every kind of scale decodes alike in the fused bf16 gather and the two-step path", () => {
    // One head of 256 channels; wkv picks feature j for output j (one-hot, exact), so the
    // keys and the value are the gathered rows themselves and every decoded bit shows.
    const r = rng(11);
    const D = 128, hc = 1, headDim = 256, rows = 600;
    const edgeScales = [0, 1, 9, 10, 11, 60, 100, 127, 150, 200, 245, 246, 247, 254];
    const codes = new Uint8Array(rows * headDim);
    const scales = new Uint8Array(rows * (headDim / 32));
    for (let row = 0; row < rows; row++) {
      const perm = Array.from({ length: 256 }, (_, i) => i).sort(() => r() - 0.5); // every code once a row
      for (let c = 0; c < headDim; c++) codes[row * headDim + c] = row % 5 === 0 ? perm[c] : perm[c] === 0x7f || perm[c] === 0xff ? 0 : perm[c];
      for (let b = 0; b < headDim / 32; b++) scales[row * (headDim / 32) + b] = edgeScales[(row + b) % edgeScales.length];
    }
    const oneHot = new Uint8Array((hc + 1) * D * headDim);
    for (let j = 0; j < (hc + 1) * D; j++) oneHot[j * headDim + j] = 0x38; // 1.0
    const dict: Record<string, Tensor> = {
      'embed.weight': { dtype: 'F8_E4M3', shape: [rows, headDim], data: codes },
      'embed.scale': { dtype: 'F8_E8M0', shape: [rows, headDim / 32], data: scales },
      'wkv.weight': { dtype: 'F8_E4M3', shape: [(hc + 1) * D, headDim], data: oneHot },
      'wkv.scale': { dtype: 'F8_E8M0', shape: [((hc + 1) * D) / 32, headDim / 32], data: new Uint8Array((((hc + 1) * D) / 32) * (headDim / 32)).fill(127) },
      q_weight: { dtype: 'F32', shape: [hc, D], data: new Float32Array(hc * D).fill(1) },
      k_weight: { dtype: 'F32', shape: [hc, D], data: new Float32Array(hc * D).fill(1) },
    };
    const layer = new DeepseekV41Engram({ hiddenSize: D, hcMult: hc, maxNgramSize: 2, nHeads: 1, headDim, numEmbeddings: rows, rmsNormEps: 1e-6 });
    layer.loadStateDict(dict);
    const S = 2 * rows;
    const rowIds = Int32Array.from({ length: S }, (_, i) => i % rows);
    const streams = Float32Array.from({ length: S * hc * D }, () => r() * 2 - 1);
    const fused = layer.forwardRows(streams, rowIds, [1, S]);
    const twoStep = layer.forwardRows(streams, rowIds, [1, S], { returnRows: true });
    expect(same(fused.output, twoStep.output)).toBe(true);
    expect(same(fused.gates, twoStep.gates)).toBe(true);
    // rows with large scales overflow the gate's sums (both paths alike); many stay finite,
    // so the comparison sees their values
    expect(Array.from(fused.output).filter(Number.isFinite).length).toBeGreaterThan(fused.output.length / 5);
  });

  it('the gather alone (the benchmarks\' measure) checks every row id first', () => {
    const engram = new Engram(config, { tokenizer, tableDtype: 'bf16', seed: 2 });
    const args = { ...engram.table.nativeArgs(), tokens: 2, rowsPerToken: 4, kernel: 'baseline', threads: 0 };
    expect(() => native().gatherPacked({ ...args, rowIds: Int32Array.of(0, 1, 2, 3, 4, 5, 6, 7) })).not.toThrow();
    expect(() => native().gatherPacked({ ...args, rowIds: Int32Array.of(0, 1, 2, 3, 4, 5, 6, engram.table.rows) })).toThrow(/rowIds\[7\] = \d+ is outside the table/);
    expect(() => native().gatherPacked({ ...args, rowIds: Int32Array.of(0), kernel: 'baseline' })).toThrow(RangeError);
    expect(() => native().gatherPacked({ ...args, rowIds: Int32Array.of(0, 1, 2, 3, 4, 5, 6, 7), kernel: 'sse4' })).toThrow(/kernel must be/);
  });
});
