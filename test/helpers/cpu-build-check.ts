// Run in a child process with ENGRAM_CPU_KERNEL set (test/70): the paper layer and
// DeepSeek-V4.1's layer on the CPU loops that cap allows, against the reference fixtures,
// and a digest of seeded random tables (every build must write the same bytes), printed
// as JSON.
import { buildInfo, DeepseekV41Engram, type Tensor } from '../../src/index.js';
import { fixture } from './fixtures.js';
import { maxRelError, small, smallEngram, smallInputs } from './forward-small.js';
import { moeNanCodeCheck } from './moe-nan-code.js';
import { randomTablesDigest } from './random-tables.js';

interface V41Small {
  config: { batch: number; seq: number; hc_mult: number; hidden_size: number; max_ngram_size: number; n_heads: number; head_dim: number; table_rows: number; rms_norm_eps: number; n_hash_cols: number };
  embed_weight: number[]; embed_scale: number[]; wkv_weight: number[]; wkv_scale: number[]; q_weight: number[]; k_weight: number[];
  hidden_streams: number[]; row_ids: number[][][]; token_mask: boolean[][]; gates: number[]; output: number[];
}

const paper = (() => {
  const engram = smallEngram();
  const { hidden, ids, shape } = smallInputs();
  const r = engram.forward(hidden, ids, shape, { returnEmbeddings: true });
  const embeddingsExact = r.embeddings!.every((v, i) => v === Math.fround(small.embeddings[i]));
  return { embeddingsExact, gates: maxRelError(r.gates, small.gates), output: maxRelError(r.output, small.output) };
})();

const v41 = (() => {
  const ref = fixture<V41Small>('v41-layer-small.json');
  const c = ref.config;
  const D = c.hidden_size;
  const features = c.n_hash_cols * c.head_dim;
  const results: Record<string, { kernel: string; gates: number; output: number }> = {};
  for (const wkvKernel of ['auto', 'fp32'] as const) {
    const l = new DeepseekV41Engram(
      { hiddenSize: D, hcMult: c.hc_mult, maxNgramSize: c.max_ngram_size, nHeads: c.n_heads, headDim: c.head_dim, numEmbeddings: c.table_rows, rmsNormEps: c.rms_norm_eps },
      { device: 'cpu', wkvKernel },
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
    results[wkvKernel] = { kernel: l.wkvKernel, gates: maxRelError(r.gates, ref.gates), output: maxRelError(r.output, ref.output) };
  }
  return results;
})();

console.log(JSON.stringify({ cpuKernel: buildInfo().cpuKernel, paper, v41, moeFp8: moeNanCodeCheck(), randomTables: randomTablesDigest() }));

