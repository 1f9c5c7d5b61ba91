// The GPU gate shared by the suites in test/gpu: true where a CUDA device is visible. Where
// none is, it says why and the suite is skipped, unless ENGRAM_REQUIRE_GPU=1 (a GPU runner,
// the GPU kit on a machine with a GPU), where a missing device fails the run instead of
// passing with everything skipped.
import { buildInfo, devices } from '../../src/index.js';

export function gpuVisible(suite: string): boolean {
  if (devices().length > 0) return true;
  const reason = buildInfo().deviceUnavailableReason;
  if (process.env.ENGRAM_REQUIRE_GPU === '1') {
    throw new Error(`ENGRAM_REQUIRE_GPU=1 but no CUDA device is visible to the ${suite} suite: ${reason}`);
  }
  console.log(`GPU ${suite} tests skipped: no CUDA device (${reason})`);
  return false;
}
