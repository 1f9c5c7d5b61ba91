// The CPU hashing loop, compiled once per instruction set (hash_cpu_kernel.cpp built with
// EK_CPU_ISA=baseline, and on x86-64 with =avx2 (-march=x86-64-v3) and =avx512
// (-march=x86-64-v4)); hash_cpu.cpp picks the widest this CPU runs, capped by
// ENGRAM_CPU_KERNEL.
#pragma once
#include <cstdint>
#include <string>

#include "hash/hash_ops.hpp"

namespace engram {

using CpuHashKernel = void (*)(const HashRequest& req, const HashTables& tables, int64_t begin, int64_t end);

namespace baseline {
void hashPositions(const HashRequest& req, const HashTables& tables, int64_t begin, int64_t end);
}
namespace avx2 {
void hashPositions(const HashRequest& req, const HashTables& tables, int64_t begin, int64_t end);
}
namespace avx512 {
void hashPositions(const HashRequest& req, const HashTables& tables, int64_t begin, int64_t end);
}

// The widest build this CPU runs ("auto"), or a named one (throws if unavailable).
CpuHashKernel cpuHashKernel(const std::string& name = "auto");
// "avx512", "avx2" or "baseline": which build "auto" picks on this machine.
const char* cpuHashKernelName();

}  // namespace engram
