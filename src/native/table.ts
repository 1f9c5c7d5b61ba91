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

/** A CUDA pager's device cache as the table a forward reads (the fields give its geometry). */
export interface NativeDeviceCacheArgs {
  devicePager: NativePagerHandle;
  tableDtype: number;
  tableRows: number;
  tableCols: number;
}

/**
 * The table a layer's native forward reads: bytes in memory or a mapped file, or a CUDA
 * pager's device cache. The addon tells them apart by `devicePager`.
 */
export type NativeTableSource = NativeTableArgs | NativeDeviceCacheArgs;

/** What a CUDA upload takes: the table to copy, or (tableless) only the format of a pager's rows. */
export type NativeUploadTable = NativeTableArgs | { tableless: true; tableDtype: number; tableCols: number };

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
