// Files and memory regions: mappings, advice, copies. The typed surface of native/binding/files.cpp (see native/binding/registry.hpp).
/** An opaque handle to a memory-mapped file of any size. */
export type NativeMappedFile = { readonly __mappedFile: unique symbol };

export interface NativeFilesFunctions {
  /** madvise(MADV_HUGEPAGE) on the buffer's 2 MiB-aligned interior; whether it was taken. */
  adviseHugePages(buffer: ArrayBuffer): boolean;
  /** A zeroed ArrayBuffer for a large output: memory of outputs JS let go, recycled (no page faults), else fresh. */
  /** zeroed false: recycled memory comes back as it was (for outputs a kernel writes whole). */
  allocateOutput(byteLength: number, zeroed?: boolean): ArrayBuffer;
  /** Zeroed memory the addon owns, for a long-lived array the library passes to many async calls (pinned, never copied). */
  allocateOwned(byteLength: number): ArrayBuffer;
  adviseRandom(region: { buffer: ArrayBuffer | NativeMappedFile; byteOffset: number; byteLength: number }): boolean;
  /** Benchmarks: unmaps a read-only mapped region's pages from this process (MADV_DONTNEED), so drop_caches can evict them. */
  releaseMappedPages(region: { buffer: ArrayBuffer | NativeMappedFile; byteOffset: number; byteLength: number }): boolean;
  /** Reads ahead and maps the pages of `rows` (rowBytes each, from byteOffset) on a worker; resolves with the pages touched and whether one had to be read. */
  adviseRowsAsync(args: { buffer: ArrayBuffer | NativeMappedFile; byteOffset: number; byteLength: number; rowBytes: number; rows: Int32Array }): Promise<{ pages: number; cold: boolean }>;
  /** A file of any size mapped privately; see mapped-file.ts. */
  mapFileHandle(path: string): NativeMappedFile;
  mappedFileView(handle: NativeMappedFile, offset: number, length: number): ArrayBuffer;
  mappedFileSize(handle: NativeMappedFile): number;
  /** The file as an ArrayBuffer over a private (copy-on-write) memory mapping. */
  mapFile(path: string): ArrayBuffer;
  /** posix_fadvise(DONTNEED) on the whole file: its clean, unmapped pages leave the page cache. */
  dropFileCache(path: string): boolean;
  /** Reads [offset, offset + byteLength) of a file into a region with pread (nothing mapped). */
  readFileRegion(args: { path: string; offset: number; byteLength: number; dst: ArrayBuffer | NativeMappedFile; dstByteOffset: number; threads: number }): void;
  /** Copies bytes between two non-overlapping regions on the addon's threads. */
  copyRegion(args: { src: ArrayBuffer | NativeMappedFile; srcByteOffset: number; dst: ArrayBuffer | NativeMappedFile; dstByteOffset: number; byteLength: number; threads: number }): void;
  /** Maps every page of the region now (memory-mapped tables fault on first touch otherwise). */
  prefaultRegion(args: { buffer: ArrayBuffer | NativeMappedFile; byteOffset: number; byteLength: number }): void;
}
