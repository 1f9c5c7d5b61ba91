// Mixture-of-Experts: routing, layout, experts, the CUDA block. The typed surface of native/binding/moe.cpp (see native/binding/registry.hpp).
import type { NativeLinearHandle } from './gemm.js';

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

export interface NativeMoeFunctions {
  moeRoute(args: NativeMoeRouteArgs): void;
  moeRouteAsync(args: NativeMoeRouteArgs): Promise<void>;
  moeExperts(args: NativeMoeExpertsArgs): void;
  moeExpertsAsync(args: NativeMoeExpertsArgs): Promise<void>;
  moeLayout(args: NativeMoeLayoutArgs): void;
  moeLayoutAsync(args: NativeMoeLayoutArgs): Promise<void>;
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
}
