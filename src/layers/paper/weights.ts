// The paper's Engram weights, held as the kernels want them (one stacked key/value
// projection, fp32 norms and conv, the table in its storage format), and their mapping
// to and from the reference module's state_dict names.
import { float32Tensor, isByteRegion, normalizeTensor, toFloat32, type ByteRegion, type Tensor } from '../../core/tensor.js';
import type { ResolvedEngramConfig } from './config.js';
import { EngramTable, SCALE_BLOCK, TABLE_TENSOR_DTYPES, type TableDtype } from '../../table/table.js';

export { TABLE_TENSOR_DTYPES };
import { describe, requireFiniteValues } from '../../core/validate.js';

export interface EngramWeights {
  table: EngramTable;
  /** [(hcMult + 1) * hidden, features]: key_projs.0 .. key_projs.{hc-1}, then value_proj. */
  keyValueWeight: Float32Array;
  keyValueBias: Float32Array;
  norm1: Float32Array; // [hc, hidden]
  norm2: Float32Array; // [hc, hidden]
  convNorm: Float32Array; // [hc, hidden]
  convWeight: Float32Array; // [hc * hidden, kernelSize]
}

export const TABLE_NAME = 'multi_head_embedding.embedding.weight';
/** fp8 tables only: the UE8M0 scale codes [rows, cols / 32]. */
export const TABLE_SCALE_NAME = 'multi_head_embedding.embedding.scale';

export interface Geometry {
  rows: number;
  cols: number;
  features: number;
  hidden: number;
  hc: number;
  kernelSize: number;
}

export function geometry(config: ResolvedEngramConfig, tableRows: number): Geometry {
  const cols = config.nEmbedPerNgram / config.nHeadPerNgram;
  return {
    rows: tableRows,
    cols,
    features: (config.maxNgramSize - 1) * config.nEmbedPerNgram,
    hidden: config.hiddenSize,
    hc: config.hcMult,
    kernelSize: config.kernelSize,
  };
}

/** Every state_dict name of the layer (table scales excluded) with its shape. */
export function expectedShapes(g: Geometry): Map<string, number[]> {
  const m = new Map<string, number[]>();
  m.set(TABLE_NAME, [g.rows, g.cols]);
  for (let i = 0; i < g.hc; i++) {
    m.set(`key_projs.${i}.weight`, [g.hidden, g.features]);
    m.set(`key_projs.${i}.bias`, [g.hidden]);
  }
  m.set('value_proj.weight', [g.hidden, g.features]);
  m.set('value_proj.bias', [g.hidden]);
  for (let i = 0; i < g.hc; i++) m.set(`norm1.${i}.weight`, [g.hidden]);
  for (let i = 0; i < g.hc; i++) m.set(`norm2.${i}.weight`, [g.hidden]);
  m.set('short_conv.conv.weight', [g.hc * g.hidden, 1, g.kernelSize]);
  for (let i = 0; i < g.hc; i++) m.set(`short_conv.norms.${i}.weight`, [g.hidden]);
  return m;
}

const shapeText = (s: readonly number[]) => `[${s.join(', ')}]`;

export function requireTensor(name: string, value: unknown): Tensor {
  const t = value as Tensor;
  // A split tensor (rowParts) is checked part by part: its joined `data` is made only on use.
  const bytesOk = (x: Tensor) => (Array.isArray(x.rowParts) ? x.rowParts.every((p) => p !== null && typeof p === 'object' && Array.isArray(p.shape) && isByteRegion(p.data)) : isByteRegion(x.data));
  if (t === null || typeof t !== 'object' || typeof t.dtype !== 'string' || !Array.isArray(t.shape) || !bytesOk(t)) {
    throw new TypeError(`tensor '${name}' must be { dtype, shape, data }, got ${describe(value)}`);
  }
  return normalizeTensor(name, t);
}

/**
 * Weights from a state dict (names relative to `prefix`). Checks every name and shape
 * first and throws naming the tensor; builds new arrays (the caller swaps them in only
 * on success). A table already in `tableDtype` is used without a copy.
 */
export function weightsFromStateDict(
  record: Record<string, unknown>,
  g: Geometry,
  tableDtype: TableDtype | undefined,
  prefix = '',
): EngramWeights {
  if (record === null || typeof record !== 'object') throw new TypeError(`state dict must be an object of tensors, got ${describe(record)}`);
  const expected = expectedShapes(g);
  const names = Object.keys(record).filter((k) => k.startsWith(prefix));
  const tensors = new Map<string, Tensor>();
  for (const full of names) {
    const name = full.slice(prefix.length);
    if (!expected.has(name) && name !== TABLE_SCALE_NAME) {
      throw new RangeError(`state dict has an unexpected tensor '${full}' (not part of an Engram layer with this config)`);
    }
    tensors.set(name, requireTensor(full, record[full]));
  }
  for (const [name, shape] of expected) {
    const t = tensors.get(name);
    if (t === undefined) throw new RangeError(`state dict is missing tensor '${prefix}${name}' (expected shape ${shapeText(shape)})`);
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw new RangeError(`tensor '${prefix}${name}' has shape ${shapeText(t.shape)} but the layer expects ${shapeText(shape)}`);
    }
  }
  // Every weight but the table (too large to scan at load) must be finite.
  const f32 = (name: string) => requireFiniteValues(prefix + name, toFloat32(prefix + name, tensors.get(name)!));
  const stack = (names: string[], width: number) => {
    const out = new Float32Array(names.length * width);
    names.forEach((n, i) => out.set(f32(n), i * width));
    return out;
  };
  const branches = Array.from({ length: g.hc }, (_, i) => i);
  return {
    table: tableFromTensor(prefix, tensors.get(TABLE_NAME)!, tensors.get(TABLE_SCALE_NAME), g, tableDtype),
    keyValueWeight: stack([...branches.map((i) => `key_projs.${i}.weight`), 'value_proj.weight'], g.hidden * g.features),
    keyValueBias: stack([...branches.map((i) => `key_projs.${i}.bias`), 'value_proj.bias'], g.hidden),
    norm1: stack(branches.map((i) => `norm1.${i}.weight`), g.hidden),
    norm2: stack(branches.map((i) => `norm2.${i}.weight`), g.hidden),
    convNorm: stack(branches.map((i) => `short_conv.norms.${i}.weight`), g.hidden),
    convWeight: f32('short_conv.conv.weight'),
  };
}

/** The table format each stored tensor dtype keeps (also fromSafetensors' default tableDtype). */

function tableFromTensor(prefix: string, t: Tensor, scales: Tensor | undefined, g: Geometry, want: TableDtype | undefined): EngramTable {
  const stored = TABLE_TENSOR_DTYPES[t.dtype];
  if (stored === undefined) throw new TypeError(`tensor '${prefix}${TABLE_NAME}' must be F32, BF16, F16 or F8_E4M3, got ${describe(t.dtype)}`);
  if (stored === 'f8e4m3') {
    const shape = [g.rows, g.cols / SCALE_BLOCK];
    if (scales === undefined) throw new RangeError(`an F8_E4M3 table needs '${prefix}${TABLE_SCALE_NAME}' (F8_E8M0 ${shapeText(shape)})`);
    if (scales.dtype !== 'F8_E8M0' && scales.dtype !== 'U8') throw new TypeError(`tensor '${prefix}${TABLE_SCALE_NAME}' must be F8_E8M0, got ${describe(scales.dtype)}`);
    if (scales.shape.length !== 2 || scales.shape[0] !== shape[0] || scales.shape[1] !== shape[1]) {
      throw new RangeError(`tensor '${prefix}${TABLE_SCALE_NAME}' has shape ${shapeText(scales.shape)} but the layer expects ${shapeText(shape)}`);
    }
  } else if (scales !== undefined) {
    throw new RangeError(`state dict has '${prefix}${TABLE_SCALE_NAME}' but the table is ${t.dtype}, not F8_E4M3`);
  }
  const table = EngramTable.fromStored(t, scales, g.rows, g.cols, stored);
  return want === undefined || want === stored ? table : table.convert(want);
}

/** The reference's state_dict names -> tensors (views of the weights, no copies). */
export function stateDictOf(w: EngramWeights, g: Geometry): Record<string, Tensor> {
  const out: Record<string, Tensor> = {};
  const dtypeName = { f32: 'F32', bf16: 'BF16', f16: 'F16', f8e4m3: 'F8_E4M3' } as const;
  out[TABLE_NAME] = { dtype: dtypeName[w.table.dtype], shape: [g.rows, g.cols], data: w.table.region };
  if (w.table.scaleRegion) out[TABLE_SCALE_NAME] = { dtype: 'F8_E8M0', shape: [g.rows, g.cols / SCALE_BLOCK], data: w.table.scaleRegion };
  const block = g.hidden * g.features;
  for (let i = 0; i < g.hc; i++) {
    out[`key_projs.${i}.weight`] = float32Tensor([g.hidden, g.features], w.keyValueWeight.subarray(i * block, (i + 1) * block));
    out[`key_projs.${i}.bias`] = float32Tensor([g.hidden], w.keyValueBias.subarray(i * g.hidden, (i + 1) * g.hidden));
  }
  out['value_proj.weight'] = float32Tensor([g.hidden, g.features], w.keyValueWeight.subarray(g.hc * block));
  out['value_proj.bias'] = float32Tensor([g.hidden], w.keyValueBias.subarray(g.hc * g.hidden));
  for (let i = 0; i < g.hc; i++) {
    const row = (a: Float32Array) => a.subarray(i * g.hidden, (i + 1) * g.hidden);
    out[`norm1.${i}.weight`] = float32Tensor([g.hidden], row(w.norm1));
    out[`norm2.${i}.weight`] = float32Tensor([g.hidden], row(w.norm2));
    out[`short_conv.norms.${i}.weight`] = float32Tensor([g.hidden], row(w.convNorm));
  }
  out['short_conv.conv.weight'] = float32Tensor([g.hc * g.hidden, 1, g.kernelSize], w.convWeight);
  return out;
}

