// Devices and what the addon was built with. The typed surface of native/binding/device.cpp (see native/binding/registry.hpp).
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

export interface NativeDeviceFunctions {
  devices(): NativeDeviceInfo[];
  buildInfo(): NativeBuildInfo;
}
