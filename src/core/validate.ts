// Argument checks shared by the public API: each throws a TypeError or RangeError that
// names the parameter and shows the value.
import fs from 'node:fs';

export function describe(value: unknown): string {
  if (typeof value === 'bigint') return `${value}n`;
  if (typeof value === 'string') return JSON.stringify(value.length > 60 ? value.slice(0, 57) + '...' : value);
  if (value === null || value === undefined || typeof value !== 'object') return String(value);
  if (ArrayBuffer.isView(value)) return `${value.constructor.name}(${(value as unknown as ArrayLike<unknown>).length})`;
  if (Array.isArray(value)) return `array(${value.length})`;
  return Object.prototype.toString.call(value);
}

export function requireInteger(name: string, value: unknown, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof value !== 'number' || !Number.isInteger(value)) {
    throw new TypeError(`${name} must be an integer, got ${describe(value)}`);
  }
  if (value < min || value > max) {
    throw new RangeError(`${name} must be in [${min}, ${max}], got ${value}`);
  }
  return value;
}

/** A finite number in [min, max] (or (min, max] with minExclusive). */
export function requireFinite(name: string, value: unknown, min = -Number.MAX_VALUE, max = Number.MAX_VALUE, minExclusive = false): number {
  if (typeof value !== 'number') throw new TypeError(`${name} must be a number, got ${describe(value)}`);
  if (!Number.isFinite(value) || (minExclusive ? value <= min : value < min) || value > max) {
    const low = min === -Number.MAX_VALUE ? '' : `${minExclusive ? '> ' : '>= '}${min}`;
    const high = max === Number.MAX_VALUE ? '' : `<= ${max}`;
    throw new RangeError(`${name} must be a finite number${low || high ? ` ${[low, high].filter(Boolean).join(' and ')}` : ''}, got ${describe(value)}`);
  }
  return value;
}

/** Whether `key` is one of the table's own keys (never an inherited one like 'toString'). */
export function isOwnKey<T extends object>(table: T, key: unknown): key is keyof T {
  return typeof key === 'string' && Object.prototype.hasOwnProperty.call(table, key);
}

export function requireIntegerList(name: string, value: unknown, min: number, max = Number.MAX_SAFE_INTEGER): number[] {
  if (!Array.isArray(value)) throw new TypeError(`${name} must be an array of integers, got ${describe(value)}`);
  return value.map((v, i) => requireInteger(`${name}[${i}]`, v, min, max));
}

/** A [B, T] shape of non-negative integers whose product fits the addon's int32 indexing. */
export function requireShape(name: string, value: unknown): [number, number] {
  if (!Array.isArray(value) || value.length !== 2) {
    throw new TypeError(`${name} must be [batch, seqLen], got ${describe(value)}`);
  }
  const b = requireInteger(`${name}[0]`, value[0], 0, 0x7fffffff);
  const t = requireInteger(`${name}[1]`, value[1], 0, 0x7fffffff);
  return [b, t];
}

export type IdArray = Int32Array | Uint32Array | Uint16Array | Uint8Array | ArrayLike<number>;

/**
 * Token ids as an Int32Array of `length` elements, each an integer in [0, vocabSize).
 * An Int32Array is used as is (no copy); anything else is copied after checking. With
 * `nativeRangeCheck`, an Int32Array's values are left to the addon, which checks them
 * before writing anything (with the same message) at a fraction of the cost.
 */
export function requireIds(name: string, value: unknown, length: number, vocabSize: number, nativeRangeCheck = false): Int32Array {
  if (value === null || typeof value !== 'object' || typeof (value as ArrayLike<number>).length !== 'number' ||
      value instanceof BigInt64Array || value instanceof BigUint64Array) {
    throw new TypeError(`${name} must be an Int32Array or an array of integers, got ${describe(value)}`);
  }
  const ids = value as ArrayLike<number>;
  if (ids.length !== length) {
    throw new RangeError(`${name} has ${ids.length} elements but the shape needs ${length}`);
  }
  if (nativeRangeCheck && value instanceof Int32Array) return value;
  const out = value instanceof Int32Array ? value : new Int32Array(length);
  for (let i = 0; i < length; i++) {
    const id = ids[i];
    if (typeof id !== 'number' || !Number.isInteger(id)) {
      throw new TypeError(`${name}[${i}] must be an integer token id, got ${describe(id)}`);
    }
    if (id < 0 || id >= vocabSize) {
      throw new RangeError(`${name}[${i}] = ${id} is outside the tokenizer's vocabulary [0, ${vocabSize})`);
    }
    if (out !== value) out[i] = id;
  }
  return out;
}

export type Device = 'cpu' | 'cuda' | 'auto';

export function requireDevice(name: string, value: unknown): Device {
  if (value === undefined) return 'auto';
  if (value !== 'cpu' && value !== 'cuda' && value !== 'auto') {
    throw new RangeError(`${name} must be 'cpu', 'cuda' or 'auto', got ${describe(value)}`);
  }
  return value;
}

/**
 * `file` as a path to a regular file (symlinks followed): a FIFO would block the read that
 * opens it, and a directory or device is no file to read tensors or a tokenizer from.
 */
export function requireRegularFile(name: string, file: unknown): string {
  if (typeof file !== 'string' || file === '') throw new TypeError(`${name} must be a non-empty path string, got ${describe(file)}`);
  let stat: fs.Stats;
  try {
    stat = fs.statSync(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new Error(code === 'ENOENT' ? `cannot open '${file}': no such file` : `cannot open '${file}': ${(err as Error).message}`);
  }
  if (!stat.isFile()) {
    const kind = stat.isFIFO() ? 'a FIFO' : stat.isDirectory() ? 'a directory' : stat.isCharacterDevice() || stat.isBlockDevice() ? 'a device' : stat.isSocket() ? 'a socket' : 'not a regular file';
    throw new TypeError(`${name} '${file}' is ${kind}, not a regular file`);
  }
  return file;
}

/**
 * A token mask of `length` positions: a Uint8Array of 0/1, or an array of booleans or 0/1.
 * Anything else (2, 255, 'no') is refused rather than read by truthiness.
 */
export function requireTokenMask(name: string, value: unknown, length: number): Uint8Array {
  if (value === null || typeof value !== 'object' || typeof (value as ArrayLike<unknown>).length !== 'number') {
    throw new TypeError(`${name} must be a Uint8Array of 0/1 or an array of booleans, got ${describe(value)}`);
  }
  const src = value as ArrayLike<unknown>;
  if (src.length !== length) throw new RangeError(`${name} has ${src.length} elements but the shape needs ${length}`);
  if (src instanceof Uint8Array) {
    const bad = src.findIndex((v) => v > 1);
    if (bad >= 0) throw new RangeError(`${name}[${bad}] must be 0 or 1, got ${src[bad]}`);
    return src;
  }
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) {
    const v = src[i];
    if (v === true || v === 1) out[i] = 1;
    else if (v !== false && v !== 0) throw new TypeError(`${name}[${i}] must be a boolean or 0/1, got ${describe(v)}`);
  }
  return out;
}

/**
 * Refuses an output that shares bytes with an input: the native side would read what it
 * has just written (a silently wrong result). Views of one buffer that do not overlap are
 * fine.
 */
export function refuseOverlap(outName: string, out: ArrayBufferView | undefined, inName: string, input: unknown): void {
  if (out === undefined || !ArrayBuffer.isView(input) || out.buffer !== input.buffer) return;
  const a0 = out.byteOffset, a1 = a0 + out.byteLength, b0 = input.byteOffset, b1 = b0 + input.byteLength;
  if (a0 < b1 && b0 < a1) throw new RangeError(`${outName} overlaps ${inName} (bytes [${a0}, ${a1}) and [${b0}, ${b1}) of one buffer): pass a separate output`);
}

/** Weights must be finite: a NaN or infinity in a norm or a projection poisons every output. */
export function requireFiniteValues(name: string, values: Float32Array): Float32Array {
  for (let i = 0; i < values.length; i++) {
    if (!Number.isFinite(values[i])) throw new RangeError(`tensor '${name}' holds ${values[i]} at index ${i}: weights must be finite`);
  }
  return values;
}
