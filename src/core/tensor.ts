// Tensor element types as safetensors names them, and their conversion to fp32 for the
// small weights (tables stay in their own format: see table.ts).
import { MappedFile } from './mapped-file.js';
import { describe } from './validate.js';

export type TensorDtype = 'F32' | 'F16' | 'BF16' | 'F8_E4M3' | 'F8_E8M0' | 'F64' | 'I64' | 'I32' | 'U8' | 'I8';

/** Lowercase / PyTorch spellings accepted for safetensors dtype names. */
const DTYPE_ALIASES: Record<string, TensorDtype> = {
  float32: 'F32', f32: 'F32', float: 'F32',
  float16: 'F16', f16: 'F16', half: 'F16',
  bfloat16: 'BF16', bf16: 'BF16',
  float64: 'F64', f64: 'F64', double: 'F64',
  float8_e4m3fn: 'F8_E4M3', float8_e4m3: 'F8_E4M3', f8_e4m3: 'F8_E4M3',
  float8_e8m0fnu: 'F8_E8M0', float8_e8m0: 'F8_E8M0', f8_e8m0: 'F8_E8M0', e8m0: 'F8_E8M0',
  int64: 'I64', i64: 'I64', long: 'I64',
  int32: 'I32', i32: 'I32', int: 'I32',
  uint8: 'U8', u8: 'U8',
  int8: 'I8', i8: 'I8',
};

/** The safetensors name of a dtype given in either spelling, or undefined. */
export function canonicalDtype(value: unknown): TensorDtype | undefined {
  if (typeof value !== 'string') return undefined;
  if (value in DTYPE_BYTES) return value as TensorDtype;
  return DTYPE_ALIASES[value.toLowerCase().replace(/^torch\./, '')];
}

export const DTYPE_BYTES: Record<TensorDtype, number> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, F8_E4M3: 1, F8_E8M0: 1, I64: 8, I32: 4, U8: 1, I8: 1,
};

/**
 * Bytes inside an ArrayBuffer. Every typed array is one; a plain region can also span
 * more than the 2^32 elements a typed array may hold (a memory-mapped 98 GB table).
 */
export interface ByteRegion {
  buffer: ArrayBufferLike | MappedFile;
  byteOffset: number;
  byteLength: number;
}

/** A tensor as a state dict holds it: dtype, shape and little-endian bytes (a typed array or a region). */
export interface Tensor {
  dtype: TensorDtype;
  shape: number[];
  data: ByteRegion;
  /** Read from a file: where the bytes start in it (what a pager reads with pread). */
  fileOffset?: number;
  /**
   * A tensor that model-parallel shards split along its first dimension: its parts in
   * row order, each where it lies (memory-mapped). `data` then joins them in memory on
   * first use; tables read the parts in place instead.
   */
  rowParts?: TensorPart[];
}

/** One row range of a split tensor, in the file `path`. */
export interface TensorPart {
  path: string;
  shape: number[];
  data: ByteRegion;
  fileOffset?: number;
}

/** A tensor's bytes, without joining a split tensor's parts. */
export const tensorByteLength = (t: Tensor): number => (t.rowParts ? t.rowParts.reduce((sum, p) => sum + p.data.byteLength, 0) : t.data.byteLength);

/** Largest Uint8Array this runtime can create. */
export const MAX_VIEW_BYTES = 2 ** 32;

export function tensorBytes(name: string, t: Tensor): Uint8Array {
  return regionBytes(t.data, `tensor '${name}'`);
}

/** A region's bytes as one Uint8Array (regions up to 4 GiB). */
export function regionBytes(r: ByteRegion, what: string): Uint8Array {
  if (r.byteLength > MAX_VIEW_BYTES) throw new RangeError(`${what} is ${r.byteLength} bytes: too large for a typed array view`);
  if (r.buffer instanceof MappedFile) return new Uint8Array(r.buffer.view(r.byteOffset, r.byteLength));
  return new Uint8Array(r.buffer, r.byteOffset, r.byteLength);
}

export function isByteRegion(v: unknown): v is ByteRegion {
  const r = v as ByteRegion;
  return r !== null && typeof r === 'object' && (r.buffer instanceof ArrayBuffer || r.buffer instanceof SharedArrayBuffer || r.buffer instanceof MappedFile) &&
    Number.isInteger(r.byteOffset) && Number.isInteger(r.byteLength) && r.byteOffset >= 0 && r.byteLength >= 0 &&
    r.byteOffset + r.byteLength <= r.buffer.byteLength;
}

export function elementCount(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

export function f16BitsToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const man = h & 0x3ff;
  if (exp === 0x1f) return man ? NaN : sign * Infinity;
  if (exp === 0) return sign * man * 2 ** -24;
  return sign * (1 + man / 1024) * 2 ** (exp - 15);
}

/** The tensor with its dtype in safetensors' spelling (aliases such as 'bfloat16' accepted). */
export function normalizeTensor(name: string, t: Tensor): Tensor {
  const dtype = canonicalDtype(t.dtype);
  if (dtype === undefined) throw new TypeError(`tensor '${name}' has an unknown dtype ${describe(t.dtype)}`);
  if (dtype === t.dtype) return t;
  // Copy the property descriptors: a split tensor's lazy `data` must stay lazy.
  return Object.defineProperties({}, { ...Object.getOwnPropertyDescriptors(t), dtype: { value: dtype, enumerable: true } }) as Tensor;
}

/** A floating-point tensor's values as fp32 (a new array). */
export function toFloat32(name: string, tensor: Tensor): Float32Array {
  const t = normalizeTensor(name, tensor);
  const n = elementCount(t.shape);
  const bytes = tensorBytes(name, t);
  if (bytes.byteLength !== n * (DTYPE_BYTES[t.dtype] ?? 0)) {
    throw new RangeError(`tensor '${name}' has ${bytes.byteLength} bytes but ${t.dtype} [${t.shape}] needs ${n * (DTYPE_BYTES[t.dtype] ?? 0)}`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float32Array(n);
  switch (t.dtype) {
    case 'F32':
      for (let i = 0; i < n; i++) out[i] = view.getFloat32(4 * i, true);
      break;
    case 'F64':
      for (let i = 0; i < n; i++) out[i] = view.getFloat64(8 * i, true);
      break;
    case 'BF16': {
      const word = new DataView(new ArrayBuffer(4));
      for (let i = 0; i < n; i++) {
        word.setUint32(0, view.getUint16(2 * i, true) << 16);
        out[i] = word.getFloat32(0);
      }
      break;
    }
    case 'F16':
      for (let i = 0; i < n; i++) out[i] = f16BitsToFloat(view.getUint16(2 * i, true));
      break;
    default:
      throw new TypeError(`tensor '${name}' must be F32, F16, BF16 or F64, got ${describe(t.dtype)}`);
  }
  return out;
}

export function float32Tensor(shape: number[], data: Float32Array): Tensor {
  return { dtype: 'F32', shape, data };
}
