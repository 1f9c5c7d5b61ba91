import { describe, expect, it } from 'vitest';

import { buildInfo, DeepseekV41Engram, type Tensor } from '../src/index.js';
import { NATIVE_OUTPUT_BYTES } from '../src/core/output.js';
import { leaveGarbageInPool } from './helpers/output-pool.js';
import { fixture } from './helpers/fixtures.js';
import { maxRelError } from './helpers/forward-small.js';

interface V41Small {
  config: { batch: number; seq: number; hc_mult: number; hidden_size: number; n_hash_cols: number; max_ngram_size: number; n_heads: number; head_dim: number; table_rows: number; rms_norm_eps: number };
  embed_weight: number[];
  embed_scale: number[];
  wkv_weight: number[];
  wkv_scale: number[];
  q_weight: number[];
  k_weight: number[];
  hidden_streams: number[];
  row_ids: number[][][];
  token_mask: boolean[][];
  rows_dequantized: number[];
  gates: number[];
  output: number[];
}

const ref = fixture<V41Small>('v41-layer-small.json');
const c = ref.config;
const D = c.hidden_size;
const features = c.n_hash_cols * c.head_dim;
const bf16Bits = (values: number[]) => Uint16Array.from(values, (v) => new Uint32Array(Float32Array.of(v).buffer)[0] >>> 16);

function stateDict(prefix = ''): Record<string, Tensor> {
  return {
    [`${prefix}embed.weight`]: { dtype: 'F8_E4M3', shape: [c.table_rows, c.head_dim], data: Uint8Array.from(ref.embed_weight) },
    [`${prefix}embed.scale`]: { dtype: 'F8_E8M0', shape: [c.table_rows, c.head_dim / 32], data: Uint8Array.from(ref.embed_scale) },
    [`${prefix}wkv.weight`]: { dtype: 'F8_E4M3', shape: [(c.hc_mult + 1) * D, features], data: Uint8Array.from(ref.wkv_weight) },
    [`${prefix}wkv.scale`]: { dtype: 'F8_E8M0', shape: [Math.ceil(((c.hc_mult + 1) * D) / 32), Math.ceil(features / 32)], data: Uint8Array.from(ref.wkv_scale) },
    [`${prefix}q_weight`]: { dtype: 'BF16', shape: [c.hc_mult, D], data: bf16Bits(ref.q_weight) },
    [`${prefix}k_weight`]: { dtype: 'bfloat16' as never, shape: [c.hc_mult, D], data: bf16Bits(ref.k_weight) },
  };
}

function layer(): DeepseekV41Engram {
  const l = new DeepseekV41Engram({
    hiddenSize: D,
    hcMult: c.hc_mult,
    maxNgramSize: c.max_ngram_size,
    nHeads: c.n_heads,
    headDim: c.head_dim,
    numEmbeddings: c.table_rows,
    rmsNormEps: c.rms_norm_eps,
  });
  l.loadStateDict(stateDict('layers.1.engram.'));
  return l;
}

describe("DeepSeek-V4.1's Engram layer equals the reference (v41-layer-small.json)", () => {
  const l = layer();
  const shape: [number, number] = [c.batch, c.seq];
  const hidden = Float32Array.from(ref.hidden_streams);
  const rowIds = Int32Array.from(ref.row_ids.flat(2));
  const tokenMask = ref.token_mask.flat();

  it('dequantises the gathered fp8 rows exactly', () => {
    const r = l.forwardRows(hidden, rowIds, shape, { tokenMask, returnRows: true });
    expect(Array.from(r.rows!)).toEqual(Array.from(Float32Array.from(ref.rows_dequantized)));
  });

  it('gates (0 where the mask is off) and output within 1e-4 * (1 + |x|)', () => {
    const r = l.forwardRows(hidden, rowIds, shape, { tokenMask });
    expect(maxRelError(r.gates, ref.gates)).toBeLessThan(1e-4);
    expect(maxRelError(r.output, ref.output)).toBeLessThan(1e-4);
    tokenMask.forEach((live, m) => {
      if (!live) {
        expect(Array.from(r.gates.subarray(m * c.hc_mult, (m + 1) * c.hc_mult))).toEqual([0, 0, 0, 0]);
        expect(Array.from(r.output.subarray(m * c.hc_mult * D, (m + 1) * c.hc_mult * D))).toEqual(Array.from(hidden.subarray(m * c.hc_mult * D, (m + 1) * c.hc_mult * D)));
      }
    });
  });

  it('async, int64 row ids and one thread give the same bits', async () => {
    const base = l.forwardRows(hidden, rowIds, shape, { tokenMask }).output;
    const a = (await l.forwardRowsAsync(hidden, BigInt64Array.from(rowIds, BigInt), shape, { tokenMask, threads: 1 })).output;
    expect(Buffer.compare(Buffer.from(a.buffer), Buffer.from(base.buffer))).toBe(0);
  });

  it('runs wkv on bf16 dot products where the CPU has them, within float rounding of the fp32 path', () => {
    const features = buildInfo().cpuFeatures;
    expect(l.wkvKernel).toBe(features.includes('avx512bf16') ? 'avx512-bf16' : buildInfo().cpuKernel);
  });

  it('a dequantised (F32) checkpoint gives the same result', () => {
    const d = new DeepseekV41Engram({ hiddenSize: D, hcMult: c.hc_mult, maxNgramSize: c.max_ngram_size, nHeads: c.n_heads, headDim: c.head_dim, numEmbeddings: c.table_rows, rmsNormEps: c.rms_norm_eps });
    const fp8 = l.table.toFloat32();
    const dict = stateDict();
    delete dict['embed.scale'];
    dict['embed.weight'] = { dtype: 'F32', shape: [c.table_rows, c.head_dim], data: fp8 };
    d.loadStateDict(dict);
    expect(d.wkvKernel).not.toBe('avx512-bf16'); // fp32 rows: the fp32 kernel
    const r = d.forwardRows(hidden, rowIds, shape, { tokenMask });
    expect(maxRelError(r.output, ref.output)).toBeLessThan(1e-4);
    expect(maxRelError(r.output, l.forwardRows(hidden, rowIds, shape, { tokenMask }).output)).toBeLessThan(1e-5);
  });

  it("wkvKernel 'fp32' reads wkv in its fp8 codes on the FMA kernel: the reference within 1e-4, the bits of an F32 table's layer", () => {
    const cfg = { hiddenSize: D, hcMult: c.hc_mult, maxNgramSize: c.max_ngram_size, nHeads: c.n_heads, headDim: c.head_dim, numEmbeddings: c.table_rows, rmsNormEps: c.rms_norm_eps };
    const f = new DeepseekV41Engram(cfg, { wkvKernel: 'fp32' });
    f.loadStateDict(stateDict());
    expect(f.wkvKernel).toBe(buildInfo().cpuKernel);
    const r = f.forwardRows(hidden, rowIds, shape, { tokenMask });
    expect(maxRelError(r.output, ref.output)).toBeLessThan(1e-4);
    const d = new DeepseekV41Engram(cfg);
    const dict = stateDict();
    delete dict['embed.scale'];
    dict['embed.weight'] = { dtype: 'F32', shape: [c.table_rows, c.head_dim], data: l.table.toFloat32() };
    d.loadStateDict(dict);
    expect(Buffer.compare(Buffer.from(d.forwardRows(hidden, rowIds, shape, { tokenMask }).output.buffer), Buffer.from(r.output.buffer))).toBe(0);
    expect(() => new DeepseekV41Engram(cfg, { wkvKernel: 'bf16' as 'fp32' })).toThrow(/options.wkvKernel must be 'auto' or 'fp32', got "bf16"/);
  });

  it('bad input: clear errors, previous weights intact', () => {
    const before = l.forwardRows(hidden, rowIds, shape, { tokenMask }).output;
    const bad = rowIds.slice();
    bad[7] = c.table_rows;
    expect(() => l.forwardRows(hidden, bad, shape)).toThrow(/rowIds\[7\] = 97 is outside the table's rows \[0, 97\)/);
    expect(() => l.forwardRows(hidden.subarray(1), rowIds, shape)).toThrow(/hiddenStreams has 1279 elements but \[2, 5, 4, 32\] needs 1280/);
    expect(() => l.forwardRows(hidden, rowIds, shape, { tokenMask: [true] })).toThrow(/options.tokenMask has 1 elements but the shape needs 10/);
    const wrong = stateDict();
    wrong['wkv.weight'] = { ...wrong['wkv.weight'], shape: [160, 192] };
    expect(() => l.loadStateDict(wrong)).toThrow(/tensor 'wkv.weight' has shape \[160, 192\] but the layer expects \[160, 384\]/);
    const dtype = stateDict();
    dtype['q_weight'] = { dtype: 'I32', shape: [4, 32], data: new Int32Array(128) };
    expect(() => l.loadStateDict(dtype)).toThrow(/tensor 'q_weight' is I32 but the layer takes BF16 or F16 or F32/);
    const missing = stateDict();
    delete missing['embed.scale'];
    expect(() => l.loadStateDict(missing)).toThrow(/missing tensor 'embed.scale'/);
    const after = l.forwardRows(hidden, rowIds, shape, { tokenMask }).output;
    expect(Buffer.compare(Buffer.from(after.buffer), Buffer.from(before.buffer))).toBe(0);
  });

  it('a default forward into recycled memory full of NaN (the kernel writes every element) gives the bits of the forward into `out`', async () => {
    // Tiled to 2,050 tokens: a 1 MiB output, which comes from the addon's pool.
    const copies = 205;
    const tokens = c.batch * c.seq * copies;
    const big = new Float32Array(hidden.length * copies);
    const bigRows = new Int32Array(rowIds.length * copies);
    for (let k = 0; k < copies; k++) {
      big.set(hidden, k * hidden.length);
      bigRows.set(rowIds, k * rowIds.length);
    }
    const bigMask = Array.from({ length: copies }, () => tokenMask).flat();
    expect(big.byteLength).toBeGreaterThanOrEqual(NATIVE_OUTPUT_BYTES);
    const out = new Float32Array(big.length);
    l.forwardRows(big, bigRows, [1, tokens], { tokenMask: bigMask, out });
    for (let round = 0; round < 2; round++) {
      await leaveGarbageInPool(big.byteLength, 0xff); // all NaN as float32
      const fresh = l.forwardRows(big, bigRows, [1, tokens], { tokenMask: bigMask }).output;
      expect(Buffer.from(fresh.buffer, fresh.byteOffset, fresh.byteLength).equals(Buffer.from(out.buffer))).toBe(true);
    }
  });
});
