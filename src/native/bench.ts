// Machine yardsticks for the benchmarks. The typed surface of native/binding/bench.cpp (see native/binding/registry.hpp).
import type { NativeTableArgs } from './table.js';

export interface NativeBenchFunctions {
  /** What async calls have copied so far (the arrays JS owns; see CallHold): bytes copied in, seconds spent allocating, copying in and back. */
  stagingStats(): { bytes: number; seconds: number; lateSeconds: number };
  /**
   * Where large outputs' memory came from so far: fresh maps by kind of page (huge or
   * small), the seconds spent faulting them in, the recent cost per MiB of each kind
   * (-1: not tried yet), and how many takes found recycled memory.
   */
  outputPoolStats(): {
    hugeMaps: number;
    smallMaps: number;
    freshBytes: number;
    hugeSeconds: number;
    smallSeconds: number;
    hugeNsPerMiB: number;
    smallNsPerMiB: number;
    recycled: number;
  };
  /** GFLOP/s of an FMA loop on `threads` threads (0: all) for about `seconds`. */
  peakGflops(args: { threads: number; seconds: number }): number;
  /** Reads the table rows `rowIds` (a bandwidth yardstick); returns a fold of the bytes. */
  readRows(args: NativeTableArgs & { rowIds: Int32Array; threads: number; withScales?: boolean }): number;
}
