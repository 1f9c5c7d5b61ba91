#include "common/crc32c.hpp"

#include <array>
#include <cstring>

#include "common/cpu_features.hpp"

#if defined(EK_HAVE_AVX2_KERNEL)
#include <nmmintrin.h>
#endif

namespace engram {

namespace {

constexpr uint32_t kPoly = 0x82f63b78u;  // Castagnoli, reflected

// tables[k][b]: the CRC of byte b followed by k zero bytes, so eight bytes are folded
// with eight lookups and no dependency between them.
struct SliceTables {
  std::array<std::array<uint32_t, 256>, 8> t{};
  SliceTables() {
    for (uint32_t b = 0; b < 256; ++b) {
      uint32_t c = b;
      for (int i = 0; i < 8; ++i) c = (c >> 1) ^ (kPoly & (0u - (c & 1u)));
      t[0][b] = c;
    }
    for (uint32_t b = 0; b < 256; ++b) {
      for (int k = 1; k < 8; ++k) t[k][b] = (t[k - 1][b] >> 8) ^ t[0][t[k - 1][b] & 0xffu];
    }
  }
};

const SliceTables& sliceTables() {
  static const SliceTables tables;
  return tables;
}

#if defined(EK_HAVE_AVX2_KERNEL)
__attribute__((target("sse4.2"))) uint32_t crc32cSse42(const uint8_t* p, size_t n) {
  uint64_t c = 0xffffffffu;
  for (; n >= 8; n -= 8, p += 8) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    c = _mm_crc32_u64(c, v);
  }
  auto c32 = static_cast<uint32_t>(c);
  for (; n > 0; --n, ++p) c32 = _mm_crc32_u8(c32, *p);
  return ~c32;
}
#endif

}  // namespace

uint32_t crc32cPortable(const uint8_t* p, size_t n) {
  const auto& t = sliceTables().t;
  uint32_t c = 0xffffffffu;
  for (; n >= 8; n -= 8, p += 8) {
    uint32_t lo;
    uint32_t hi;
    std::memcpy(&lo, p, 4);
    std::memcpy(&hi, p + 4, 4);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    lo = __builtin_bswap32(lo);
    hi = __builtin_bswap32(hi);
#endif
    lo ^= c;
    c = t[7][lo & 0xffu] ^ t[6][(lo >> 8) & 0xffu] ^ t[5][(lo >> 16) & 0xffu] ^ t[4][lo >> 24] ^
        t[3][hi & 0xffu] ^ t[2][(hi >> 8) & 0xffu] ^ t[1][(hi >> 16) & 0xffu] ^ t[0][hi >> 24];
  }
  for (; n > 0; --n, ++p) c = (c >> 8) ^ t[0][(c ^ *p) & 0xffu];
  return ~c;
}

uint32_t crc32c(const uint8_t* data, size_t bytes) {
#if defined(EK_HAVE_AVX2_KERNEL)
  if (cpuHasAvx2()) return crc32cSse42(data, bytes);
#endif
  return crc32cPortable(data, bytes);
}

}  // namespace engram
