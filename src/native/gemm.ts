// Projections and weight formats: packed for the CPU micro-kernels, quantised codes. The typed surface of native/binding/gemm.cpp (see native/binding/registry.hpp).
/** An opaque handle to projection weights packed for the CPU micro-kernel. */
export type NativeLinearHandle = { readonly __packedLinear: unique symbol };

export interface NativeGemmFunctions {
  /** fp8-e4m3 codes [rows, cols] with UE8M0 scales per 32x32 block -> fp32. */
  dequantizeBlockFp8(args: { codes: ArrayBuffer; codesByteOffset: number; scales: ArrayBuffer; scalesByteOffset: number; rows: number; cols: number; out: Float32Array; threads: number }): void;
  /** preferBf16: pack for the AVX512-BF16 kernel when every weight is exactly bf16 (inputs must be too). */
  packLinear(args: { weight: Float32Array; bias?: Float32Array; n: number; k: number; cpuKernel?: string; preferBf16?: boolean }): NativeLinearHandle;
  /** Quantised weights kept in their codes (scales: one row per weight row, [n, ceil(k/32)]); preferBf16: e4m3 weights exact in bf16 become the AVX512-BF16 kernel's panels, decoded from the codes. */
  packLinear(args: { format: 'bf16' | 'f16' | 'e4m3' | 'e2m1'; codes: Uint8Array; scales?: Uint8Array; bias?: Float32Array; n: number; k: number; cpuKernel?: string; preferBf16?: boolean }): NativeLinearHandle;
  quantizeWeights(args: { format: string; weight: Float32Array; n: number; k: number; blockRows: number; codes: Uint8Array; scales?: Uint8Array; threads: number }): void;
  dequantizeWeights(args: { format: string; codes: Uint8Array; scales?: Uint8Array; n: number; k: number; blockRows: number; out: Float32Array; threads: number }): void;
  /** Which kernel a packed projection runs on: 'avx512', 'avx512-bf16', 'avx2' or 'baseline'. */
  linearKernel(args: { weight: NativeLinearHandle }): string;
  linear(args: { weight: NativeLinearHandle; x: Float32Array; m: number; out: Float32Array; threads: number }): void;
}
