#include "cpu_features.hpp"

namespace engram {

bool cpuHasAvx512() {
#if defined(EK_HAVE_AVX512_KERNEL)
  static const bool has = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
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
