#include "binding/staging_copy.hpp"

#include <cstring>

namespace engram {

void copyStaged(void* dst, const void* src, size_t bytes) {
#if defined(__x86_64__)
  if (bytes >= (size_t{1} << 20)) {
    asm volatile("rep movsb" : "+D"(dst), "+S"(src), "+c"(bytes) : : "memory");
    return;
  }
#endif
  std::memcpy(dst, src, bytes);
}

}  // namespace engram
