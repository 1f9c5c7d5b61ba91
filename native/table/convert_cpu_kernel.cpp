// Rows [begin, end) of a seeded table fill (see convert_cpu_kernel.hpp): each row's values
// from the counter-based stream (randomRow), then encoded (encodeTableRow). Both are loops
// the compiler vectorises, so the wider builds run them in wider registers.
#include <vector>

#include "table/convert.cuh"
#include "table/convert_cpu_kernel.hpp"

#ifndef EK_CPU_ISA
#define EK_CPU_ISA baseline
#endif

namespace engram {
namespace EK_CPU_ISA {

// Flattened: the header's bodies are inline functions, and a copy left out of line would be
// merged by the linker with the other builds' copies (it kept the baseline one, so the
// AVX-512 loop called SSE2 code); inlined into this build's function they stay its own.
[[gnu::flatten]] void fillRandomRows(uint8_t* dst, uint8_t* dstScales, TableDtype dtype, int64_t begin, int64_t end, int cols,
                                     uint64_t seed, bool normal, float scale) {
  const int64_t rowBytes = static_cast<int64_t>(cols) * tableElementBytes(dtype);
  std::vector<float> row(static_cast<size_t>(cols));
  for (int64_t r = begin; r < end; ++r) {
    randomRow(seed, static_cast<uint64_t>(r) * cols, cols, normal, scale, row.data());
    encodeTableRow(dtype, row.data(), cols, dst + r * rowBytes, dstScales ? dstScales + r * (cols / kScaleBlock) : nullptr);
  }
}

}  // namespace EK_CPU_ISA
}  // namespace engram
