#include "common/cpu_features.hpp"

#include <cstdlib>
#include <cstring>

namespace engram {

namespace {
// ENGRAM_CPU_KERNEL=baseline|avx2 caps the builds picked at run time below what the CPU
// runs (to test or compare the narrower loops on a wider machine); unset: no cap.
[[maybe_unused]] bool capAllows(const char* build) {
  static const char* cap = std::getenv("ENGRAM_CPU_KERNEL");
  if (cap == nullptr || *cap == '\0' || std::strcmp(cap, "avx512") == 0) return true;
  if (std::strcmp(cap, "baseline") == 0) return false;
  return std::strcmp(build, "avx2") == 0;  // cap "avx2": AVX-512 off
}
}  // namespace

bool cpuHasAvx2() {
#if defined(EK_HAVE_AVX2_KERNEL)
  static const bool has = [] {
    __builtin_cpu_init();
    return capAllows("avx2") && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c") &&
           __builtin_cpu_supports("bmi") && __builtin_cpu_supports("bmi2") && __builtin_cpu_supports("movbe") &&
           __builtin_cpu_supports("lzcnt");
  }();
  return has;
#else
  return false;
#endif
}

bool cpuHasAvx512() {
#if defined(EK_HAVE_AVX512_KERNEL)
  static const bool has = [] {
    __builtin_cpu_init();
    return capAllows("avx512") && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw");
  }();
  return has;
#else
  return false;
#endif
}

bool cpuHasAvx512Bf16() {
#if defined(EK_HAVE_AVX512_KERNEL)
  static const bool has = cpuHasAvx512() && __builtin_cpu_supports("avx512bf16");
  return has;
#else
  return false;
#endif
}

}  // namespace engram
