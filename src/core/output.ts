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

function buffer(bytes: number, options: OutputOptions): ArrayBuffer | undefined {
  return bytes >= NATIVE_OUTPUT_BYTES ? native().allocateOutput(bytes, options.overwritten !== true) : undefined;
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
