// Projection weights in their stored formats (bf16, f16, fp8-e4m3 and MXFP4 with UE8M0
// block scales): read from a state dict, quantised from fp32, and packed for the CPU GEMM,
// which decodes one panel slice at a time (no float copy of the matrix).
import { DTYPE_BYTES, elementCount, tensorBytes, toFloat32, type Tensor } from '../core/tensor.js';
import { native, type NativeLinearHandle } from '../native/index.js';
import { requireTensor } from '../layers/paper/weights.js';
import { describe, requireInteger } from '../core/validate.js';

export type WeightFormat = 'f32' | 'bf16' | 'f16' | 'e4m3' | 'e2m1';

/** Inputs per UE8M0 scale along a row. */
export const WEIGHT_SCALE_BLOCK = 32;

/**
 * A weight matrix [n, k] as codes. `codes` is row-major: 2 bytes a weight for bf16/f16,
 * 1 for e4m3, and two e2m1 codes a byte for MXFP4 (even input in the low nibble).
 * e4m3/e2m1 carry `scales` `[ceil(n / blockRows), ceil(k / 32)]`: one UE8M0 code per
 * `blockRows` x 32 block (MXFP4: blockRows 1; DeepSeek's fp8 weights: 32).
 */
export interface QuantizedWeight {
  format: Exclude<WeightFormat, 'f32'>;
  shape: [number, number];
  codes: Uint8Array;
  scales?: Uint8Array;
  blockRows: number;
}

/** A projection's weights: plain fp32, or codes. */
export type LinearWeight = Float32Array | QuantizedWeight;

const blocksOf = (k: number) => Math.ceil(k / WEIGHT_SCALE_BLOCK);
const isScaled = (f: WeightFormat) => f === 'e4m3' || f === 'e2m1';

function codeBytes(format: WeightFormat, n: number, k: number): number {
  const perRow = format === 'f32' ? 4 * k : format === 'e4m3' ? k : format === 'e2m1' ? Math.ceil(k / 2) : 2 * k;
  return n * perRow;
}

function requireFormat(name: string, value: unknown): Exclude<WeightFormat, 'f32'> {
  if (value === 'bf16' || value === 'f16' || value === 'e4m3' || value === 'e2m1') return value;
  throw new RangeError(`${name} must be 'bf16', 'f16', 'e4m3' or 'e2m1', got ${describe(value)}`);
}

/**
 * fp32 weights [n, k] encoded as `format` (round to nearest even; each scale is the
 * smallest power of two that clips nothing in its block). `blockRows` defaults to 1 for
 * e2m1 (MXFP4) and 32 for e4m3 (DeepSeek's 32x32 blocks).
 */
export function quantizeWeight(
  weight: Float32Array,
  shape: [number, number],
  format: Exclude<WeightFormat, 'f32'>,
  options: { blockRows?: number } = {},
): QuantizedWeight {
  if (!(weight instanceof Float32Array)) throw new TypeError(`weight must be a Float32Array, got ${describe(weight)}`);
  const f = requireFormat('format', format);
  const n = requireInteger('shape[0]', shape?.[0], 1, 2 ** 31 - 1);
  const k = requireInteger('shape[1]', shape?.[1], 1, 2 ** 31 - 1);
  if (weight.length !== n * k) throw new RangeError(`weight has ${weight.length} elements but shape [${n}, ${k}] needs ${n * k}`);
  if (f === 'e2m1' && k % 2 !== 0) throw new RangeError(`e2m1 weights need an even k, got ${k}`);
  const blockRows = requireInteger('options.blockRows', options.blockRows ?? (f === 'e4m3' ? 32 : 1), 1, 1 << 20);
  const codes = new Uint8Array(codeBytes(f, n, k));
  const scales = isScaled(f) ? new Uint8Array(Math.ceil(n / blockRows) * blocksOf(k)) : undefined;
  native().quantizeWeights({ format: f, weight, n, k, blockRows, codes, scales, threads: 0 });
  return { format: f, shape: [n, k], codes, scales, blockRows };
}

/** The exact fp32 values of quantised weights. */
export function dequantizeWeight(w: QuantizedWeight): Float32Array {
  const [n, k] = w.shape;
  const out = new Float32Array(n * k);
  native().dequantizeWeights({ format: w.format, codes: w.codes, scales: w.scales, n, k, blockRows: w.blockRows, out, threads: 0 });
  return out;
}

/** Bytes the weights take in memory (codes and scales, or fp32). */
export function weightBytes(w: LinearWeight): number {
  return w instanceof Float32Array ? w.byteLength : w.codes.byteLength + (w.scales?.byteLength ?? 0);
}

/** Scales with one row per weight row ([n, ceil(k/32)]): what the packer and stacking take. */
function perRowScales(w: QuantizedWeight): Uint8Array | undefined {
  if (w.scales === undefined || w.blockRows === 1) return w.scales;
  const [n, k] = w.shape;
  const blocks = blocksOf(k);
  const out = new Uint8Array(n * blocks);
  for (let r = 0; r < n; r++) out.set(w.scales.subarray(Math.floor(r / w.blockRows) * blocks, Math.floor(r / w.blockRows) * blocks + blocks), r * blocks);
  return out;
}

/** Matrices of one format stacked along n (e.g. gate and up projections for one GEMM). */
export function stackWeightRows(parts: LinearWeight[], names: string[]): LinearWeight {
  const first = parts[0];
  if (first instanceof Float32Array) {
    const bad = parts.findIndex((p) => !(p instanceof Float32Array));
    if (bad >= 0) throw new TypeError(`tensor '${names[bad]}' is quantised but '${names[0]}' is not: a stacked projection needs one format`);
    const out = new Float32Array(parts.reduce((s, p) => s + (p as Float32Array).length, 0));
    let at = 0;
    for (const p of parts as Float32Array[]) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  }
  const k = first.shape[1];
  parts.forEach((p, i) => {
    if (p instanceof Float32Array || p.format !== first.format || p.shape[1] !== k) {
      throw new TypeError(`tensor '${names[i]}' must have the format and inputs of '${names[0]}' (${first.format}, k ${k}) to be stacked with it`);
    }
  });
  const q = parts as QuantizedWeight[];
  const n = q.reduce((s, p) => s + p.shape[0], 0);
  const codes = new Uint8Array(q.reduce((s, p) => s + p.codes.length, 0));
  let at = 0;
  for (const p of q) {
    codes.set(p.codes, at);
    at += p.codes.length;
  }
  let scales: Uint8Array | undefined;
  if (isScaled(first.format)) {
    const rows = q.map(perRowScales) as Uint8Array[];
    scales = new Uint8Array(rows.reduce((s, r) => s + r.length, 0));
    at = 0;
    for (const r of rows) {
      scales.set(r, at);
      at += r.length;
    }
  }
  return { format: first.format, shape: [n, k], codes, scales, blockRows: 1 };
}

/**
 * Matrices of one shape and format, one after the other as the CUDA backend uploads them:
 * codes (fp32 bytes for F32) and per-row scales.
 */
export function concatWeights(list: LinearWeight[], n: number, k: number, what: string): { format: WeightFormat; n: number; k: number; count: number; codes: Uint8Array; scales?: Uint8Array } {
  const first = list[0];
  const format: WeightFormat = first === undefined || first instanceof Float32Array ? 'f32' : first.format;
  const parts = list.map((w, i) => {
    const f = w instanceof Float32Array ? 'f32' : w.format;
    if (f !== format) throw new TypeError(`${what} ${i} is ${f} but ${what} 0 is ${format}: the CUDA backend keeps one format per kind of expert weight`);
    return w instanceof Float32Array
      ? { codes: new Uint8Array(w.buffer, w.byteOffset, w.byteLength), scales: undefined }
      : { codes: w.codes, scales: perRowScales(w) };
  });
  const join = (arrays: Uint8Array[]) => {
    const out = new Uint8Array(arrays.reduce((t, a) => t + a.length, 0));
    let at = 0;
    for (const a of arrays) {
      out.set(a, at);
      at += a.length;
    }
    return out;
  };
  const codes = join(parts.map((p) => p.codes));
  const scales = isScaled(format) ? join(parts.map((p) => p.scales!)) : undefined;
  return { format, n, k, count: list.length, codes, scales };
}

/** Packs weights [n, k] (+ bias) for the CPU GEMM; quantised ones stay in their codes. */
export function packWeight(w: LinearWeight, n: number, k: number, bias?: Float32Array, options: { preferBf16?: boolean } = {}): NativeLinearHandle {
  const preferBf16 = options.preferBf16 === true;
  if (w instanceof Float32Array) return native().packLinear({ weight: w, bias, n, k, preferBf16 });
  if (w.shape[0] !== n || w.shape[1] !== k) throw new RangeError(`weights are [${w.shape.join(', ')}] but the projection needs [${n}, ${k}]`);
  return native().packLinear({ format: w.format, codes: w.codes, scales: perRowScales(w), bias, n, k, preferBf16 });
}

const bytesOf = (name: string, t: Tensor) => {
  const b = tensorBytes(name, t);
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
};

/**
 * A projection weight [n, k] from a state dict tensor (and its UE8M0 scale tensor, for
 * fp8 and MXFP4), checked against the expected shape: F32/F64 -> fp32; BF16/F16 -> codes;
 * F8_E4M3 [n, k] with F8_E8M0 scales [ceil(n/32), ceil(k/32)] (DeepSeek's blocks) or
 * [n, ceil(k/32)]; MXFP4 as U8/I8 [n, k/2] (two e2m1 codes a byte, even input low) with
 * F8_E8M0 scales [n, ceil(k/32)].
 */
export function weightFromTensors(name: string, tensor: unknown, scaleName: string, scaleTensor: unknown, shape: [number, number]): LinearWeight {
  const t = requireTensor(name, tensor);
  const [n, k] = shape;
  const shapeText = (s: readonly number[]) => `[${s.join(', ')}]`;
  const expectShape = (what: string, got: readonly number[], want: number[]) => {
    if (got.length !== want.length || got.some((d, i) => d !== want[i])) {
      throw new RangeError(`tensor '${what}' has shape ${shapeText(got)} but the block expects ${shapeText(want)}`);
    }
  };
  const expectBytes = (what: string, tt: Tensor, bytes: number) => {
    if (tt.data.byteLength !== bytes) throw new RangeError(`tensor '${what}' has ${tt.data.byteLength} bytes but ${tt.dtype} ${shapeText(tt.shape)} needs ${bytes}`);
  };
  switch (t.dtype) {
    case 'F32':
    case 'F64':
      expectShape(name, t.shape, [n, k]);
      return toFloat32(name, t);
    case 'BF16':
    case 'F16':
      expectShape(name, t.shape, [n, k]);
      expectBytes(name, t, n * k * 2);
      return { format: t.dtype === 'BF16' ? 'bf16' : 'f16', shape: [n, k], codes: bytesOf(name, t), blockRows: 1 };
    case 'F8_E4M3':
    case 'U8':
    case 'I8': {
      const mxfp4 = t.dtype !== 'F8_E4M3';
      expectShape(name, t.shape, mxfp4 ? [n, k / 2] : [n, k]);
      expectBytes(name, t, elementCount(t.shape) * DTYPE_BYTES[t.dtype]);
      if (mxfp4 && k % 2 !== 0) throw new RangeError(`tensor '${name}': MXFP4 weights need an even number of inputs, got ${k}`);
      if (scaleTensor === undefined) throw new RangeError(`state dict is missing tensor '${scaleName}' (the UE8M0 scales of ${t.dtype} '${name}')`);
      const s = requireTensor(scaleName, scaleTensor);
      if (s.dtype !== 'F8_E8M0' && s.dtype !== 'U8') throw new TypeError(`tensor '${scaleName}' must be F8_E8M0, got ${s.dtype}`);
      const blocks = blocksOf(k);
      const perRow = s.shape.length === 2 && s.shape[0] === n && s.shape[1] === blocks;
      const perBlock = !mxfp4 && s.shape.length === 2 && s.shape[0] === Math.ceil(n / 32) && s.shape[1] === blocks;
      if (!perRow && !perBlock) {
        const want = mxfp4 ? shapeText([n, blocks]) : `${shapeText([Math.ceil(n / 32), blocks])} or ${shapeText([n, blocks])}`;
        throw new RangeError(`tensor '${scaleName}' has shape ${shapeText(s.shape)} but the block expects ${want}`);
      }
      expectBytes(scaleName, s, elementCount(s.shape));
      return { format: mxfp4 ? 'e2m1' : 'e4m3', shape: [n, k], codes: bytesOf(name, t), scales: bytesOf(scaleName, s), blockRows: perRow ? 1 : 32 };
    }
    default:
      throw new TypeError(`tensor '${name}' must be F32, BF16, F16, F8_E4M3 (with scales) or U8/I8 MXFP4 (with scales), got ${t.dtype}`);
  }
}
