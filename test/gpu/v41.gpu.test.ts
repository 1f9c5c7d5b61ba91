// GPU suite for DeepSeek-V4.1's layer: runs where a CUDA device is visible, says so otherwise.
import { describe, expect, it } from 'vitest';

import { DeepseekV41Engram, type Tensor } from '../../src/index.js';
import { gpuVisible } from '../helpers/gpu.js';
import { fixture } from '../helpers/fixtures.js';
import { maxRelError } from '../helpers/forward-small.js';

const visible = gpuVisible('V4.1');

interface V41Small {
  config: { batch: number; seq: number; hc_mult: number; hidden_size: number; max_ngram_size: number; n_heads: number; head_dim: number; table_rows: number; rms_norm_eps: number; n_hash_cols: number };
  embed_weight: number[]; embed_scale: number[]; wkv_weight: number[]; wkv_scale: number[]; q_weight: number[]; k_weight: number[];
  hidden_streams: number[]; row_ids: number[][][]; token_mask: boolean[][]; gates: number[]; output: number[];
}

describe.skipIf(!visible)("CUDA DeepSeek-V4.1 layer", () => {
  it('equals the reference (v41-layer-small.json)', () => {
    const ref = fixture<V41Small>('v41-layer-small.json');
    const c = ref.config;
    const D = c.hidden_size;
    const features = c.n_hash_cols * c.head_dim;
    const l = new DeepseekV41Engram(
      { hiddenSize: D, hcMult: c.hc_mult, maxNgramSize: c.max_ngram_size, nHeads: c.n_heads, headDim: c.head_dim, numEmbeddings: c.table_rows, rmsNormEps: c.rms_norm_eps },
      { device: 'cuda' },
    );
    const dict: Record<string, Tensor> = {
      'embed.weight': { dtype: 'F8_E4M3', shape: [c.table_rows, c.head_dim], data: Uint8Array.from(ref.embed_weight) },
      'embed.scale': { dtype: 'F8_E8M0', shape: [c.table_rows, c.head_dim / 32], data: Uint8Array.from(ref.embed_scale) },
      'wkv.weight': { dtype: 'F8_E4M3', shape: [(c.hc_mult + 1) * D, features], data: Uint8Array.from(ref.wkv_weight) },
      'wkv.scale': { dtype: 'F8_E8M0', shape: [Math.ceil(((c.hc_mult + 1) * D) / 32), Math.ceil(features / 32)], data: Uint8Array.from(ref.wkv_scale) },
      q_weight: { dtype: 'F32', shape: [c.hc_mult, D], data: Float32Array.from(ref.q_weight) },
      k_weight: { dtype: 'F32', shape: [c.hc_mult, D], data: Float32Array.from(ref.k_weight) },
    };
    l.loadStateDict(dict);
    const r = l.forwardRows(Float32Array.from(ref.hidden_streams), Int32Array.from(ref.row_ids.flat(2)), [c.batch, c.seq], { tokenMask: ref.token_mask.flat() });
    expect(maxRelError(r.gates, ref.gates)).toBeLessThan(1e-4);
    expect(maxRelError(r.output, ref.output)).toBeLessThan(1e-4);

    // The table split by rows (a sharded checkpoint's parts) is joined on upload: same bits.
    const split = new DeepseekV41Engram(
      { hiddenSize: D, hcMult: c.hc_mult, maxNgramSize: c.max_ngram_size, nHeads: c.n_heads, headDim: c.head_dim, numEmbeddings: c.table_rows, rmsNormEps: c.rms_norm_eps },
      { device: 'cuda' },
    );
    const cut = Math.floor(c.table_rows / 3);
    const parts = (t: Tensor, width: number) => {
      const bytes = t.data as Uint8Array;
      return [
        { path: 'rank0', shape: [cut, width], data: bytes.slice(0, cut * width) },
        { path: 'rank1', shape: [c.table_rows - cut, width], data: bytes.slice(cut * width) },
      ];
    };
    split.loadStateDict({
      ...dict,
      'embed.weight': { ...dict['embed.weight'], rowParts: parts(dict['embed.weight'], c.head_dim) },
      'embed.scale': { ...dict['embed.scale'], rowParts: parts(dict['embed.scale'], c.head_dim / 32) },
    });
    expect(split.table.parts.length).toBe(2);
    const s = split.forwardRows(Float32Array.from(ref.hidden_streams), Int32Array.from(ref.row_ids.flat(2)), [c.batch, c.seq], { tokenMask: ref.token_mask.flat() });
    expect(Buffer.compare(Buffer.from(s.output.buffer), Buffer.from(r.output.buffer))).toBe(0);
  });
});
