// Tables: rows in any stored format, gathered, converted, filled. The typed surface of native/binding/table.cpp (see native/binding/registry.hpp).
import type { NativeMappedFile } from './files.js';
import type { NativePagerHandle } from './pager.js';

/** Table storage codes shared with native/table/gather.cuh. */
export const TABLE_DTYPE_CODES = { f32: 0, bf16: 1, f16: 2, f8e4m3: 3 } as const;

/** A table as bytes of ArrayBuffers (regions may exceed what a typed array can view). */
export interface NativeTableArgs {
  table: ArrayBuffer | NativeMappedFile;
  tableByteOffset: number;
  tableScales?: ArrayBuffer | NativeMappedFile;
  tableScalesByteOffset: number;
  tableDtype: number;
  tableRows: number;
  tableCols: number;
  /** A table split by rows: its regions in row order (the fields above then name the first). */
  tableParts?: Array<{ rows: number; table: ArrayBuffer | NativeMappedFile; tableByteOffset: number; tableScales?: ArrayBuffer | NativeMappedFile; tableScalesByteOffset: number }>;
}

/** A table argument that is a CUDA pager's device cache (the table fields give its geometry). */
export interface NativeDevicePagerArgs {
  devicePager?: NativePagerHandle;
  /** Upload the weights without the table (it comes from a pager at every call). */
  tableless?: boolean;
}

export interface NativeTableFunctions {
  /** The layers' in-GEMM gather alone (rows decoded and packed, no GEMM): for benchmarks. */
  gatherPacked(args: NativeTableArgs & { rowIds: Int32Array | BigInt64Array; tokens: number; rowsPerToken: number; kernel: string; threads: number }): void;
  gatherRows(args: NativeTableArgs & { rowIds: Int32Array | BigInt64Array; tokens: number; rowsPerToken: number; out: Float32Array; threads: number }): void;
  convertTable(args: NativeTableArgs & { dst: ArrayBuffer; dstByteOffset: number; dstScales?: ArrayBuffer; dstScalesByteOffset: number; dstDtype: number; threads: number }): void;
  /** Fills the table of `args` (its dtype) with seeded random values. */
  fillRandom(args: NativeTableArgs & {
    seed: number;
    distribution: 'normal' | 'uniform';
    scale: number;
    threads: number;
  }): void;
}
