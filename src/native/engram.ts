// The paper's Engram layer. The typed surface of native/binding/engram.cpp (see native/binding/registry.hpp).
import type { NativeLinearHandle } from './gemm.js';
import type { NativeTableSource, NativeUploadTable } from './table.js';

export type NativeEngramForwardArgs = NativeTableSource & NativeEngramForwardFields;

export interface NativeEngramForwardFields {
  batch: number;
  seqLen: number;
  hc: number;
  hidden: number;
  /** row ids per token ((maxNgramSize - 1) * nHeadPerNgram) */
  rowsPerToken: number;
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

export type NativeEngramUploadArgs = NativeUploadTable & {
  hc: number;
  hidden: number;
  /** row ids per token ((maxNgramSize - 1) * nHeadPerNgram) */
  rowsPerToken: number;
  kernelSize: number;
  keyValueWeight: Float32Array;
  keyValueBias: Float32Array;
  norm1: Float32Array;
  norm2: Float32Array;
  convNorm: Float32Array;
  convWeight: Float32Array;
  deviceIndex: number;
};

export interface NativeEngramFunctions {
  engramForward(args: NativeEngramForwardArgs): void;
  engramForwardAsync(args: NativeEngramForwardArgs): Promise<void>;
  engramUploadCuda(args: NativeEngramUploadArgs): NativeDeviceWeightsHandle;
  /** The upload on a worker thread (a large table's copy keeps the event loop free). */
  engramUploadCudaAsync(args: NativeEngramUploadArgs): Promise<NativeDeviceWeightsHandle>;
}
