// Large outputs the library allocates (a forward's output, hashed row ids) come from the
// addon's output pool: memory of earlier outputs JS let go, already mapped, zeroed again
// (allocateOutput). The first write of a fresh buffer faults its pages in 4 KiB at a time,
// most of the cost of a new 64 MB Float32Array on a VM. Small ones stay ordinary arrays.
import { native } from '../native/index.js';

/** Outputs of at least this many bytes come from the addon's output pool. */
export const NATIVE_OUTPUT_BYTES = 1 << 20;

/**
 * overwritten: the native call that fills the output writes every element (hashing), so
 * recycled memory is handed over without being zeroed first. Anything else gets zeros.
 */
export interface OutputOptions {
  overwritten?: boolean;
}

/**
 * Outputs from this size up (and under NATIVE_OUTPUT_BYTES) are the addon's own heap
 * memory (allocateOwned): an async call that later takes them (a state's history, an
 * output passed on to the next layer) pins them instead of copying them. Smaller ones
 * cost less to copy than to allocate natively.
 */
export const OWNED_OUTPUT_BYTES = 16 << 10;

function buffer(bytes: number, options: OutputOptions): ArrayBuffer | undefined {
  if (bytes >= NATIVE_OUTPUT_BYTES) return native().allocateOutput(bytes, options.overwritten !== true);
  return bytes >= OWNED_OUTPUT_BYTES ? native().allocateOwned(bytes) : undefined;
}

export function newFloat32(length: number, options: OutputOptions = {}): Float32Array {
  const b = buffer(length * 4, options);
  return b === undefined ? new Float32Array(length) : new Float32Array(b);
}

export function newInt32(length: number, options: OutputOptions = {}): Int32Array {
  const b = buffer(length * 4, options);
  return b === undefined ? new Int32Array(length) : new Int32Array(b);
}

export function newBigInt64(length: number, options: OutputOptions = {}): BigInt64Array {
  const b = buffer(length * 8, options);
  return b === undefined ? new BigInt64Array(length) : new BigInt64Array(b);
}

/**
 * A copy of `a` in memory the addon owns. Async calls copy the typed arrays JS owns at
 * call time (JS could transfer them away while the call runs); the addon's own memory is
 * pinned instead. For arrays the library keeps and passes to many calls.
 */
export function ownedCopy<T extends Int32Array | Float32Array | Uint8Array>(a: T): T {
  const Ctor = a.constructor as new (b: ArrayBuffer) => T;
  const copy = new Ctor(native().allocateOwned(a.byteLength));
  copy.set(a as never);
  return copy;
}

function requireLength(length: unknown): number {
  if (typeof length !== 'number' || !Number.isInteger(length) || length < 0 || length > 2 ** 32 - 1) {
    throw new RangeError(`length must be an integer in [0, 2^32 - 1], got ${typeof length === 'number' ? length : typeof length}`);
  }
  return length;
}

/**
 * A zeroed Float32Array in the addon's memory. Async calls (forwardAsync, ...) copy the
 * plain typed arrays they are given, because JS could transfer them away while a worker
 * reads them; an array from here is read and written in place, with no copy. For inputs
 * you fill and pass to async calls again and again (outputs of the library's calls
 * already live there).
 */
export function allocateFloat32(length: number): Float32Array {
  return newFloat32(requireLength(length));
}

/** As allocateFloat32, for token ids and row ids. */
export function allocateInt32(length: number): Int32Array {
  return newInt32(requireLength(length));
}
