// CRC32C (Castagnoli, reflected, init and final xor ~0): the checksum of every page the
// remote tier stores, written (push) and checked (fetch) with this code.
#pragma once
#include <cstddef>
#include <cstdint>

namespace engram {

// The SSE4.2 crc32 instruction where the x86-64-v3 builds may run (not under
// ENGRAM_CPU_KERNEL=baseline), else a slice-by-8 table.
uint32_t crc32c(const uint8_t* data, size_t bytes);
// The table path alone (tests compare the two).
uint32_t crc32cPortable(const uint8_t* data, size_t bytes);

}  // namespace engram
