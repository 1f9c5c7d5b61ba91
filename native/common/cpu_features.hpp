// Which CPU kernel builds this machine can run (decided once, at run time).
#pragma once

namespace engram {

// AVX2, FMA, F16C, BMI1/2 and the rest of x86-64-v3: what the avx2 builds need.
bool cpuHasAvx2();
// AVX-512 F/DQ/VL/BW: what the avx512 builds (-march=x86-64-v4) need.
bool cpuHasAvx512();
// AVX512-BF16 (vdpbf16ps) on top of that.
bool cpuHasAvx512Bf16();

}  // namespace engram
