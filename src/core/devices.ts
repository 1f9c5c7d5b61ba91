// Which devices this process can compute on, and how a call's `device` option resolves.
import { native, type NativeDeviceInfo } from '../native/index.js';
import type { Device } from './validate.js';

export type DeviceInfo = NativeDeviceInfo;

let visible: DeviceInfo[] | undefined;

/**
 * CUDA devices visible to this process ([] without a GPU or a driver, or in a CPU-only
 * build). Asked once: the CUDA runtime does not see devices appear later anyway, and the
 * question costs milliseconds where no driver exists.
 */
export function devices(): DeviceInfo[] {
  visible ??= native().devices();
  return visible.map((d) => ({ ...d }));
}

export interface BuildInfo {
  /** The addon contains the CUDA backend. */
  cuda: boolean;
  /** Threads the CPU backend uses at most. */
  cpuThreads: number;
  /** Why no CUDA device can be used, or '' when one can. */
  deviceUnavailableReason: string;
  /** Which build of the CPU loops this machine runs: 'avx512', 'avx2' (x86-64-v3) or 'baseline'. */
  cpuKernel: 'avx512' | 'avx2' | 'baseline';
  /** CPU kernel features in use: 'avx512', 'avx512bf16'. */
  cpuFeatures: string[];
}

export function buildInfo(): BuildInfo {
  return native().buildInfo();
}

/** 'auto' picks CUDA when a device is visible; 'cuda' without one is a clear error. */
export function resolveDevice(device: Device, deviceIndex = 0): 'cpu' | 'cuda' {
  if (device === 'cpu') return 'cpu';
  const found = devices();
  if (device === 'auto') return found.length > 0 ? 'cuda' : 'cpu';
  if (found.length === 0) {
    throw new Error(`device 'cuda' was requested but no CUDA device is available: ${buildInfo().deviceUnavailableReason}`);
  }
  if (!Number.isInteger(deviceIndex) || deviceIndex < 0 || deviceIndex >= found.length) {
    throw new RangeError(`options.deviceIndex must be in [0, ${found.length}), got ${deviceIndex}`);
  }
  return 'cuda';
}
