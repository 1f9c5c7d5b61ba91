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
  cpuKernel: 'avx512' | 'baseline';
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
  /** CPU loop build: 'auto' (default), 'baseline' or 'avx512'. */
  cpuKernel?: string;
}

export interface NativeAddon {
  devices(): NativeDeviceInfo[];
  buildInfo(): NativeBuildInfo;
  ngramHashes(args: NativeHashArgs): void;
  ngramHashesAsync(args: NativeHashArgs): Promise<void>;
}

export const packageRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

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
