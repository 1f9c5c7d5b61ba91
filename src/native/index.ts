// The only place that loads the native addon; its typed surface is split by capability,
// one file per binding (a new native function: its binding .cpp and its file here).
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { loadAddon } from './load.js';

import type { NativeDeviceFunctions } from './device.js';
import type { NativeHashFunctions } from './hash.js';
import type { NativeFilesFunctions } from './files.js';
import type { NativeTableFunctions } from './table.js';
import type { NativeGemmFunctions } from './gemm.js';
import type { NativeEngramFunctions } from './engram.js';
import type { NativeV41Functions } from './v41.js';
import type { NativeMoeFunctions } from './moe.js';
import type { NativePagerFunctions } from './pager.js';
import type { NativeBenchFunctions } from './bench.js';

export * from './device.js';
export * from './hash.js';
export * from './files.js';
export * from './table.js';
export * from './gemm.js';
export * from './engram.js';
export * from './v41.js';
export * from './moe.js';
export * from './pager.js';
export * from './bench.js';

export type NativeAddon = NativeDeviceFunctions &
  NativeHashFunctions &
  NativeFilesFunctions &
  NativeTableFunctions &
  NativeGemmFunctions &
  NativeEngramFunctions &
  NativeV41Functions &
  NativeMoeFunctions &
  NativePagerFunctions &
  NativeBenchFunctions;

// dist/native/index.js -> the package root (two folders up).
export const packageRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

let cached: NativeAddon | undefined;

/** Loads the addon once (a local build or the prebuild, found by node-gyp-build). */
export function native(): NativeAddon {
  if (cached === undefined) cached = loadAddon<NativeAddon>(packageRoot);
  return cached;
}
