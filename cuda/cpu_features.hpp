// Which CPU kernel builds this machine can run (decided once, at run time).
#pragma once

namespace engram {

// AVX-512 F/DQ/VL/BW: what the avx512 builds (-march=x86-64-v4) need.
bool cpuHasAvx512();
// AVX512-BF16 (vdpbf16ps) on top of that.
bool cpuHasAvx512Bf16();

}  // namespace engram
