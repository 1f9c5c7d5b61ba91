// The reference's small Engram forward (forward-small.json) as an Engram layer.
import { type BaselineLayer } from '../reference/paper-layer.js';
import { CompressedTokenizer, CONV_NORM_EPS, Engram, GATE_NORM_EPS, type EngramOptions, type Tensor } from '../../src/index.js';
import { fixture } from './fixtures.js';

export interface ForwardSmall {
  config: {
    batch: number;
    seq: number;
    hc_mult: number;
    hidden_size: number;
    n_embed_per_ngram: number;
    n_head_per_ngram: number;
    max_ngram_size: number;
    engram_vocab_size: number[];
    layer_id: number;
    seed: number;
    pad_id: number;
    kernel_size: number;
  };
  primes: number[][];
  input_ids: number[][];
  hashes: number[][][];
  weights: Record<'table' | 'key_w' | 'key_b' | 'value_w' | 'value_b' | 'norm1_w' | 'norm2_w' | 'conv_norm_w' | 'conv_w', number[]>;
  hidden_states: number[];
  embeddings: number[];
  gates: number[];
  output: number[];
}

export const small = fixture<ForwardSmall>('forward-small.json');

export function smallConfig() {
  const c = small.config;
  return {
    layerId: c.layer_id,
    layerIds: [c.layer_id],
    hiddenSize: c.hidden_size,
    hcMult: c.hc_mult,
    kernelSize: c.kernel_size,
    nEmbedPerNgram: c.n_embed_per_ngram,
    nHeadPerNgram: c.n_head_per_ngram,
    maxNgramSize: c.max_ngram_size,
    engramVocabSize: c.engram_vocab_size,
    padId: c.pad_id,
    seed: c.seed,
  };
}

const f32 = (shape: number[], values: number[]): Tensor => ({ dtype: 'F32', shape, data: Float32Array.from(values) });

/** The fixture's weights by the reference's state_dict names. */
export function smallStateDict(): Record<string, Tensor> {
  const c = small.config;
  const w = small.weights;
  const hidden = c.hidden_size;
  const features = (c.max_ngram_size - 1) * c.n_embed_per_ngram;
  const cols = c.n_embed_per_ngram / c.n_head_per_ngram;
  const rows = w.table.length / cols;
  const dict: Record<string, Tensor> = {
    'multi_head_embedding.embedding.weight': f32([rows, cols], w.table),
    'value_proj.weight': f32([hidden, features], w.value_w),
    'value_proj.bias': f32([hidden], w.value_b),
    'short_conv.conv.weight': f32([c.hc_mult * hidden, 1, c.kernel_size], w.conv_w),
  };
  for (let g = 0; g < c.hc_mult; g++) {
    const slice = (a: number[], n: number) => a.slice(g * n, (g + 1) * n);
    dict[`key_projs.${g}.weight`] = f32([hidden, features], slice(w.key_w, hidden * features));
    dict[`key_projs.${g}.bias`] = f32([hidden], slice(w.key_b, hidden));
    dict[`norm1.${g}.weight`] = f32([hidden], slice(w.norm1_w, hidden));
    dict[`norm2.${g}.weight`] = f32([hidden], slice(w.norm2_w, hidden));
    dict[`short_conv.norms.${g}.weight`] = f32([hidden], slice(w.conv_norm_w, hidden));
  }
  return dict;
}

let tokenizer: CompressedTokenizer | undefined;
export function smallEngram(options: EngramOptions = {}): Engram {
  tokenizer ??= CompressedTokenizer.deepseekV3();
  const engram = new Engram(smallConfig(), { tokenizer, init: 'none', ...options });
  engram.loadStateDict(smallStateDict());
  return engram;
}

export function smallInputs() {
  return {
    hidden: Float32Array.from(small.hidden_states),
    ids: Int32Array.from(small.input_ids.flat()),
    shape: [small.config.batch, small.config.seq] as [number, number],
  };
}

/** max over i of |got - want| / (1 + |want|). */
export function maxRelError(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let worst = 0;
  for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i] - want[i]) / (1 + Math.abs(want[i])));
  return worst;
}

/** The layer's weights (table decoded to fp32) for the plain TypeScript layer. */
export function baselineLayerOf(engram: Engram): BaselineLayer {
  const d = engram.stateDict();
  const g = engram.geometry;
  const f = (name: string) => d[name].data as Float32Array;
  const cat = (names: string[]) => {
    const parts = names.map(f);
    const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  };
  const branches = Array.from({ length: g.hc }, (_, i) => i);
  return {
    hidden: g.hidden,
    hc: g.hc,
    heads: engram.hashMapping.headsPerLayer,
    cols: g.cols,
    kernelSize: g.kernelSize,
    dilation: engram.config.maxNgramSize,
    gateEps: GATE_NORM_EPS,
    convEps: CONV_NORM_EPS,
    table: engram.table.toFloat32(),
    keyValueWeight: cat([...branches.map((i) => `key_projs.${i}.weight`), 'value_proj.weight']),
    keyValueBias: cat([...branches.map((i) => `key_projs.${i}.bias`), 'value_proj.bias']),
    norm1: cat(branches.map((i) => `norm1.${i}.weight`)),
    norm2: cat(branches.map((i) => `norm2.${i}.weight`)),
    convNorm: cat(branches.map((i) => `short_conv.norms.${i}.weight`)),
    convWeight: f('short_conv.conv.weight'),
  };
}
