// Which devices this process can compute on, and how a call's `device` option resolves.
import { native, type NativeDeviceInfo } from './native.js';
import type { Device } from './validate.js';

export type DeviceInfo = NativeDeviceInfo;

/** CUDA devices visible now ([] without a GPU or a driver, or in a CPU-only build). */
export function devices(): DeviceInfo[] {
  return native().devices();
}

export interface BuildInfo {
  /** The addon contains the CUDA backend. */
  cuda: boolean;
  /** Threads the CPU backend uses at most. */
  cpuThreads: number;
  /** Why no CUDA device can be used, or '' when one can. */
  deviceUnavailableReason: string;
}

export function buildInfo(): BuildInfo {
  return native().buildInfo();
}

/** 'auto' picks CUDA when a device is visible; 'cuda' without one is a clear error. */
export function resolveDevice(device: Device, deviceIndex = 0): 'cpu' | 'cuda' {
  if (device === 'cpu') return 'cpu';
  const visible = devices();
  if (device === 'auto') return visible.length > 0 ? 'cuda' : 'cpu';
  if (visible.length === 0) {
    throw new Error(`device 'cuda' was requested but no CUDA device is available: ${buildInfo().deviceUnavailableReason}`);
  }
  if (!Number.isInteger(deviceIndex) || deviceIndex < 0 || deviceIndex >= visible.length) {
    throw new RangeError(`deviceIndex must be in [0, ${visible.length}), got ${deviceIndex}`);
  }
  return 'cuda';
}
