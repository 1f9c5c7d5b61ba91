// The seeded table fill's row loop, compiled once per instruction set (convert_cpu_kernel.cpp
// built with EK_CPU_ISA=baseline, and on x86-64 with =avx2 and =avx512, as the hashing
// loop is); convert_cpu.cpp picks the widest this CPU runs. Every build writes the same
// bytes: the loop's arithmetic is correctly rounded (no contraction, no libm).
#pragma once
#include <cstdint>

#include "table/gather.cuh"

namespace engram {

using CpuFillKernel = void (*)(uint8_t* dst, uint8_t* dstScales, TableDtype dtype, int64_t begin, int64_t end, int cols,
                               uint64_t seed, bool normal, float scale);

namespace baseline {
void fillRandomRows(uint8_t* dst, uint8_t* dstScales, TableDtype dtype, int64_t begin, int64_t end, int cols, uint64_t seed,
                    bool normal, float scale);
}
namespace avx2 {
void fillRandomRows(uint8_t* dst, uint8_t* dstScales, TableDtype dtype, int64_t begin, int64_t end, int cols, uint64_t seed,
                    bool normal, float scale);
}
namespace avx512 {
void fillRandomRows(uint8_t* dst, uint8_t* dstScales, TableDtype dtype, int64_t begin, int64_t end, int cols, uint64_t seed,
                    bool normal, float scale);
}

}  // namespace engram
