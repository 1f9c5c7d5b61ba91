// The table pager. The typed surface of native/binding/pager.cpp (see native/binding/registry.hpp).
import type { NativeMappedFile } from './files.js';

/** Opaque pager handle (native/pager/pager.hpp). */
export type NativePagerHandle = { readonly __pager: unique symbol };

export interface NativePagerArgs {
  rows: number;
  rowBytes: number;
  scaleRowBytes: number;
  pageRows: number;
  slots: number;
  hotRows: number;
  /** 0 lru, 1 lfu, 2 direct */
  eviction: number;
  simulate: boolean;
  bytesPerSecond: number;
  /** Threads reading a job's pages at once (CPU engine). */
  readThreads?: number;
  /** >= 0: the cache lives on this CUDA device (copies on a copy stream). */
  device?: number;
  tableDtype?: number;
  tableCols?: number;
  table?: ArrayBuffer | NativeMappedFile;
  tableByteOffset?: number;
  tableScales?: ArrayBuffer | NativeMappedFile;
  tableScalesByteOffset?: number;
  path?: string;
  dataOffset?: number;
  scalesOffset?: number;
  /** The remote tier: JS fetches the pages (pagerRemoteJobs / Fill / Complete). */
  remote?: boolean;
}

export interface NativePagerStats {
  lookups: number;
  uniqueRows: number;
  uniquePages: number;
  pageHits: number;
  pageMisses: number;
  rowHits: number;
  rowMisses: number;
  hotRowHits: number;
  bytesCopied: number;
  evictions: number;
  tickets: number;
  stallSeconds: number;
  copySeconds: number;
  residentPages: number;
  ticketsInFlight: number;
  /**
   * How the table's home is read into the cache: 'io_uring' (a file, one submission per
   * prefetch), 'pread' (a file, reader threads: where the kernel refuses io_uring, or with
   * ENGRAM_FILE_READS=pread), 'memory' (RAM or a mapping), 'none' (simulation, CUDA, remote).
   */
  fileReads: 'io_uring' | 'pread' | 'memory' | 'none';
}

export interface NativePagerFunctions {
  pagerCreate(args: NativePagerArgs): { pager: NativePagerHandle; cache?: NativeMappedFile; cacheScalesByteOffset?: number };
  pagerAcquire(pager: NativePagerHandle, rowIds: Int32Array | BigInt64Array, translated?: Int32Array): number;
  pagerWait(pager: NativePagerHandle, ticket: number): void;
  pagerWaitAsync(pager: NativePagerHandle, ticket: number): Promise<void>;
  pagerRelease(pager: NativePagerHandle, ticket: number): void;
  pagerSetHotRows(pager: NativePagerHandle, rows: BigInt64Array): void;
  pagerStats(pager: NativePagerHandle): NativePagerStats;
  pagerResetStats(pager: NativePagerHandle): void;
  /** Remote tier: the copy jobs submitted since the last call; copies are [srcRow, dstRow, rows] triples. */
  pagerRemoteJobs(pager: NativePagerHandle): Array<{ job: number; copies: Float64Array }>;
  /** Remote tier: rows of a job into the cache; false when the job was abandoned (nothing written). */
  pagerRemoteFill(pager: NativePagerHandle, args: { job: number; dstRow: number; rows: number; data: Uint8Array; scales?: Uint8Array }): boolean;
  /**
   * Remote tier: a job's pages as the store returned them (values[i] is page pages[i]'s
   * stored value, or null when missing), each checked whole (header and CRC32C) before any
   * row is written, then the job's rows copied from them. Returns -1 when written, -2 when
   * the job was abandoned (nothing written), else the index of the first value that fails
   * its check (nothing written).
   */
  pagerRemoteFillPages(pager: NativePagerHandle, args: { job: number; pages: Float64Array; values: ReadonlyArray<Buffer | null>; tableTag: Uint8Array }): number;
  /** CRC32C of `data` (the remote tier's page checksum); `portable` forces the table path. */
  crc32c(data: Uint8Array, portable?: boolean): number;
  /** Remote tier: ends a job ('' when every page arrived intact, else the error its waiters get). */
  pagerRemoteComplete(pager: NativePagerHandle, job: number, failure: string, seconds: number): void;
}
