// Which CPU kernel builds this machine can run (decided once, at run time).
#pragma once

namespace engram {

// AVX-512 F/DQ/VL/BW: what the avx512 builds (-march=x86-64-v4) need.
bool cpuHasAvx512();

}  // namespace engram
