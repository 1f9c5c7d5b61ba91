// DeepSeek-V4.1's Engram layer. The typed surface of native/binding/v41.cpp (see native/binding/registry.hpp).
import type { NativeLinearHandle } from './gemm.js';
import type { NativeTableSource, NativeUploadTable } from './table.js';

export type NativeV41ForwardArgs = NativeTableSource & NativeV41ForwardFields;

export interface NativeV41ForwardFields {
  batch: number;
  seqLen: number;
  hc: number;
  hidden: number;
  /** row ids per token ((maxNgramSize - 1) * nHeads) */
  rowsPerToken: number;
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

export type NativeV41UploadArgs = NativeUploadTable & { hc: number; hidden: number; rowsPerToken: number; wkv: Float32Array; qWeight: Float32Array; kWeight: Float32Array; deviceIndex: number };

export interface NativeV41Functions {
  v41Forward(args: NativeV41ForwardArgs): void;
  v41ForwardAsync(args: NativeV41ForwardArgs): Promise<void>;
  v41UploadCuda(args: NativeV41UploadArgs): NativeV41DeviceHandle;
  /** The upload on a worker thread (a large table's copy keeps the event loop free). */
  v41UploadCudaAsync(args: NativeV41UploadArgs): Promise<NativeV41DeviceHandle>;
}
