// The only place that loads and types the native addon.
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export interface NativeDeviceInfo {
  index: number;
  name: string;
  computeCapability: string;
  totalMemory: number;
  multiprocessors: number;
}

export interface NativeBuildInfo {
  cuda: boolean;
  cpuThreads: number;
  deviceUnavailableReason: string;
  cpuKernel: 'avx512' | 'avx2' | 'baseline';
  /** CPU kernel features in use: 'avx512', 'avx512bf16'. */
  cpuFeatures: string[];
}

/** Arguments of one hashing call; every array is already checked by the TS layer. */
export interface NativeHashArgs {
  batch: number;
  seqLen: number;
  layers: number;
  maxNgram: number;
  headsPerNgram: number;
  padId: number;
  compressedVocabSize: number;
  ids: Int32Array;
  mask?: Uint8Array;
  history?: Int32Array;
  lookup: Int32Array;
  multipliers: BigInt64Array;
  primes: BigUint64Array;
  offsets?: BigInt64Array;
  out: Int32Array | BigInt64Array;
  historyOut?: Int32Array;
  device: 'cpu' | 'cuda';
  deviceIndex: number;
  threads: number;
  /** CPU loop build: 'auto' (default), 'baseline', 'avx2' or 'avx512'. */
  cpuKernel?: string;
}

/** An opaque handle to a memory-mapped file of any size. */
export type NativeMappedFile = { readonly __mappedFile: unique symbol };

/** An opaque handle to projection weights packed for the CPU micro-kernel. */
export type NativeLinearHandle = { readonly __packedLinear: unique symbol };
export type NativeMoeDeviceHandle = { readonly __moeDevice: unique symbol };
export interface NativeExpertMatrices {
  format: string;
  n: number;
  k: number;
  count: number;
  codes: Uint8Array;
  scales?: Uint8Array;
}
/** What selects the experts (moe.cuh's RouteParams, the biases and the image mask). */
export interface NativeRouteParams {
  tokens: number;
  experts: number;
  topk: number;
  groups: number;
  topkGroups: number;
  scoreFunc: number;
  gateTemp: number;
  routeScale: number;
  normEps: number;
  bias?: Float32Array;
  biasVl?: Float32Array;
  imageMask?: Uint8Array;
}
export interface NativeMoeCudaArgs extends NativeRouteParams {
  deviceWeights: NativeMoeDeviceHandle;
  dim: number;
  x: Float32Array;
  swigluLimit: number;
  out: Float32Array;
  indices: Int32Array;
  weights: Float32Array;
  logits: Float32Array;
}

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

export interface NativeEngramForwardArgs extends NativeTableArgs, NativeDevicePagerArgs {
  batch: number;
  seqLen: number;
  hc: number;
  hidden: number;
  heads: number;
  kernelSize: number;
  dilation: number;
  hiddenStates: Float32Array;
  rowIds: Int32Array | BigInt64Array;
  /** Ids per token in rowIds and this layer's first (several layers interleaved). */
  rowIdsStride: number;
  rowIdsOffset: number;
  keyValue: NativeLinearHandle;
  norm1: Float32Array;
  norm2: Float32Array;
  convNorm: Float32Array;
  convWeight: Float32Array;
  gateEps: number;
  convEps: number;
  convHistory?: Float32Array;
  out: Float32Array;
  gates?: Float32Array;
  embeddings?: Float32Array;
  convHistoryOut?: Float32Array;
  stageSeconds?: Float64Array;
  threads: number;
  /** Run on CUDA with these device-resident weights (from engramUploadCuda). */
  deviceWeights?: NativeDeviceWeightsHandle;
}

/** An opaque handle to a layer's weights resident on a CUDA device. */
export type NativeDeviceWeightsHandle = { readonly __deviceWeights: unique symbol };

export interface NativeV41ForwardArgs extends NativeTableArgs, NativeDevicePagerArgs {
  batch: number;
  seqLen: number;
  hc: number;
  hidden: number;
  cols: number;
  rowIds: Int32Array | BigInt64Array;
  rowIdsStride: number;
  rowIdsOffset: number;
  hiddenStreams: Float32Array;
  wkv: NativeLinearHandle;
  qWeight: Float32Array;
  kWeight: Float32Array;
  eps: number;
  tokenMask?: Uint8Array;
  out: Float32Array;
  gates?: Float32Array;
  rows?: Float32Array;
  /** [3]: gather, wkv, gate seconds */
  stageSeconds?: Float64Array;
  threads: number;
  /** Run on CUDA with these device-resident weights (from v41UploadCuda). */
  deviceWeights?: NativeV41DeviceHandle;
}

/** An opaque handle to a V4.1 layer's weights resident on a CUDA device. */
export type NativeV41DeviceHandle = { readonly __v41DeviceWeights: unique symbol };

export type NativeMoeExpertsArgs = {
    tokens: number;
    dim: number;
    topk: number;
    x: Float32Array;
    indices: Int32Array;
    weights: Float32Array;
    gateUp: NativeLinearHandle[];
    down: NativeLinearHandle[];
    sharedGateUp?: NativeLinearHandle[];
    sharedDown?: NativeLinearHandle[];
    swigluLimit: number;
    out: Float32Array;
    /** [3]: dispatch, experts, combine seconds */
    stageSeconds?: Float64Array;
    threads: number;
  };

export interface NativeAddon {
  moeRoute(args: NativeMoeRouteArgs): void;
  moeRouteAsync(args: NativeMoeRouteArgs): Promise<void>;
  moeExperts(args: NativeMoeExpertsArgs): void;
  moeExpertsAsync(args: NativeMoeExpertsArgs): Promise<void>;
  moeLayout(args: NativeMoeLayoutArgs): void;
  moeLayoutAsync(args: NativeMoeLayoutArgs): Promise<void>;
  v41Forward(args: NativeV41ForwardArgs): void;
  v41ForwardAsync(args: NativeV41ForwardArgs): Promise<void>;
  v41UploadCuda(args: NativeTableArgs & NativeDevicePagerArgs & { hc: number; hidden: number; cols: number; wkv: Float32Array; qWeight: Float32Array; kWeight: Float32Array; deviceIndex: number }): NativeV41DeviceHandle;
  /** fp8-e4m3 codes [rows, cols] with UE8M0 scales per 32x32 block -> fp32. */
  dequantizeBlockFp8(args: { codes: ArrayBuffer; codesByteOffset: number; scales: ArrayBuffer; scalesByteOffset: number; rows: number; cols: number; out: Float32Array; threads: number }): void;
  /** GFLOP/s of an FMA loop on `threads` threads (0: all) for about `seconds`. */
  peakGflops(args: { threads: number; seconds: number }): number;
  /** Reads the table rows `rowIds` (a bandwidth yardstick); returns a fold of the bytes. */
  readRows(args: NativeTableArgs & { rowIds: Int32Array; threads: number; withScales?: boolean }): number;
  /** madvise(MADV_HUGEPAGE) on the buffer's 2 MiB-aligned interior; whether it was taken. */
  adviseHugePages(buffer: ArrayBuffer): boolean;
  adviseRandom(region: { buffer: ArrayBuffer | NativeMappedFile; byteOffset: number; byteLength: number }): boolean;
  /** A file of any size mapped privately; see mapped-file.ts. */
  mapFileHandle(path: string): NativeMappedFile;
  mappedFileView(handle: NativeMappedFile, offset: number, length: number): ArrayBuffer;
  mappedFileSize(handle: NativeMappedFile): number;
  /** The file as an ArrayBuffer over a private (copy-on-write) memory mapping. */
  mapFile(path: string): ArrayBuffer;
  /** preferBf16: pack for the AVX512-BF16 kernel when every weight is exactly bf16 (inputs must be too). */
  packLinear(args: { weight: Float32Array; bias?: Float32Array; n: number; k: number; cpuKernel?: string; preferBf16?: boolean }): NativeLinearHandle;
  /** Quantised weights kept in their codes (scales: one row per weight row, [n, ceil(k/32)]); preferBf16: e4m3 weights exact in bf16 become the AVX512-BF16 kernel's panels, decoded from the codes. */
  packLinear(args: { format: 'bf16' | 'f16' | 'e4m3' | 'e2m1'; codes: Uint8Array; scales?: Uint8Array; bias?: Float32Array; n: number; k: number; cpuKernel?: string; preferBf16?: boolean }): NativeLinearHandle;
  moeUploadCuda(args: {
    experts: number;
    dim: number;
    gateWeight: Float32Array;
    gateUp: NativeExpertMatrices;
    down: NativeExpertMatrices;
    sharedGateUp?: NativeExpertMatrices;
    sharedDown?: NativeExpertMatrices;
    deviceIndex: number;
  }): NativeMoeDeviceHandle;
  moeForwardCuda(args: NativeMoeCudaArgs): void;
  moeForwardCudaAsync(args: NativeMoeCudaArgs): Promise<void>;
  quantizeWeights(args: { format: string; weight: Float32Array; n: number; k: number; blockRows: number; codes: Uint8Array; scales?: Uint8Array; threads: number }): void;
  dequantizeWeights(args: { format: string; codes: Uint8Array; scales?: Uint8Array; n: number; k: number; blockRows: number; out: Float32Array; threads: number }): void;
  /** Which kernel a packed projection runs on: 'avx512', 'avx512-bf16', 'avx2' or 'baseline'. */
  linearKernel(args: { weight: NativeLinearHandle }): string;
  linear(args: { weight: NativeLinearHandle; x: Float32Array; m: number; out: Float32Array; threads: number }): void;
  /** The layers' in-GEMM gather alone (rows decoded and packed, no GEMM): for benchmarks. */
  gatherPacked(args: NativeTableArgs & { rowIds: Int32Array | BigInt64Array; tokens: number; heads: number; kernel: string; threads: number }): void;
  gatherRows(args: NativeTableArgs & { rowIds: Int32Array | BigInt64Array; tokens: number; heads: number; out: Float32Array; threads: number }): void;
  engramForward(args: NativeEngramForwardArgs): void;
  engramForwardAsync(args: NativeEngramForwardArgs): Promise<void>;
  engramUploadCuda(args: NativeTableArgs & NativeDevicePagerArgs & {
    hc: number;
    hidden: number;
    heads: number;
    kernelSize: number;
    keyValueWeight: Float32Array;
    keyValueBias: Float32Array;
    norm1: Float32Array;
    norm2: Float32Array;
    convNorm: Float32Array;
    convWeight: Float32Array;
    deviceIndex: number;
  }): NativeDeviceWeightsHandle;
  convertTable(args: NativeTableArgs & { dst: ArrayBuffer; dstByteOffset: number; dstScales?: ArrayBuffer; dstScalesByteOffset: number; dstDtype: number; threads: number }): void;
  /** Fills the table of `args` (its dtype) with seeded random values. */
  fillRandom(args: NativeTableArgs & {
    seed: number;
    distribution: 'normal' | 'uniform';
    scale: number;
    threads: number;
  }): void;
  /** posix_fadvise(DONTNEED) on the whole file: its clean, unmapped pages leave the page cache. */
  dropFileCache(path: string): boolean;
  /** Reads [offset, offset + byteLength) of a file into a region with pread (nothing mapped). */
  readFileRegion(args: { path: string; offset: number; byteLength: number; dst: ArrayBuffer | NativeMappedFile; dstByteOffset: number; threads: number }): void;
  /** Copies bytes between two non-overlapping regions on the addon's threads. */
  copyRegion(args: { src: ArrayBuffer | NativeMappedFile; srcByteOffset: number; dst: ArrayBuffer | NativeMappedFile; dstByteOffset: number; byteLength: number; threads: number }): void;
  /** Maps every page of the region now (memory-mapped tables fault on first touch otherwise). */
  prefaultRegion(args: { buffer: ArrayBuffer | NativeMappedFile; byteOffset: number; byteLength: number }): void;
  pagerCreate(args: NativePagerArgs): { pager: NativePagerHandle; cache?: NativeMappedFile; cacheScalesByteOffset?: number };
  pagerAcquire(pager: NativePagerHandle, rowIds: Int32Array | BigInt64Array, translated?: Int32Array): number;
  pagerWait(pager: NativePagerHandle, ticket: number): void;
  pagerWaitAsync(pager: NativePagerHandle, ticket: number): Promise<void>;
  pagerRelease(pager: NativePagerHandle, ticket: number): void;
  pagerSetHotRows(pager: NativePagerHandle, rows: BigInt64Array): void;
  pagerStats(pager: NativePagerHandle): NativePagerStats;
  pagerResetStats(pager: NativePagerHandle): void;
  devices(): NativeDeviceInfo[];
  buildInfo(): NativeBuildInfo;
  ngramHashes(args: NativeHashArgs): void;
  ngramHashesAsync(args: NativeHashArgs): Promise<void>;
}

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
}

export interface NativeMoeRouteArgs extends NativeRouteParams {
  /** set: logits = x . gate^T computed natively first */
  gate?: NativeLinearHandle;
  /** set: the gate GEMM and the selection run on this CUDA device (gateWeight, dim and x given) */
  cudaDevice?: number;
  gateWeight?: Float32Array;
  dim?: number;
  x?: Float32Array;
  logits: Float32Array;
  indices: Int32Array;
  weights: Float32Array;
  threads: number;
}

export interface NativeMoeLayoutArgs {
  indices: Int32Array;
  tokens: number;
  topk: number;
  experts: number;
  ranks: number;
  expertToRank?: Int32Array;
  counts: Int32Array;
  offsets: Int32Array;
  permutation: Int32Array;
  countsPerRank?: Int32Array;
  tokenInRank?: Uint8Array;
}

// dist/native/index.js -> the package root (two folders up).
export const packageRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

let cached: NativeAddon | undefined;

/** Loads the addon once (prebuild or local build, found by node-gyp-build). */
export function native(): NativeAddon {
  if (cached !== undefined) return cached;
  const require = createRequire(import.meta.url);
  const load = require('node-gyp-build') as (dir: string) => NativeAddon;
  try {
    cached = load(packageRoot);
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    throw new Error(
      `engram-kernels: the native addon could not be loaded (${reason}). ` +
        `Possible causes: the install step did not build it (run \`npm rebuild engram-kernels\` ` +
        `or \`npx cmake-js compile\` in the package folder), no prebuild matches this platform ` +
        `(${process.platform}-${process.arch}, Node ${process.versions.node}), or a C++ toolchain/cmake is missing.`,
    );
  }
  return cached;
}
