// CPU projections: weight packing, build selection, and the split of the output into
// (row block, panel range) tiles over the thread pool.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <string>
#include <vector>

#include "common/common.hpp"
#include "common/cpu_features.hpp"
#include "gemm/gemm_ops.hpp"

namespace engram {

namespace {

using TilesFn = void (*)(const float*, int64_t, const PackedLinear&, float*, int64_t, int64_t, int64_t, int64_t,
                         int64_t, const int32_t*, const GatheredRows*, int64_t*);

struct LinearBuild {
  const char* name;
  int width;
  TilesFn tiles;
  double (*peakLoop)(int64_t, float*);
};

LinearBuild linearBuild(const std::string& name) {
  const LinearBuild base{"baseline", baseline::linearTileWidth(), baseline::linearTiles, baseline::fmaPeakLoop};
  if (name == "baseline") return base;
  EK_REQUIRE(name == "auto" || name == "avx2" || name == "avx512", RangeError,
             "cpu kernel must be 'auto', 'baseline', 'avx2' or 'avx512', got '" + name + "'");
#if defined(EK_HAVE_AVX512_KERNEL)
  if ((name == "avx512" || name == "auto") && cpuHasAvx512()) return {"avx512", avx512::linearTileWidth(), avx512::linearTiles, avx512::fmaPeakLoop};
#endif
#if defined(EK_HAVE_AVX2_KERNEL)
  if ((name == "avx2" || name == "auto") && cpuHasAvx2()) return {"avx2", avx2::linearTileWidth(), avx2::linearTiles, avx2::fmaPeakLoop};
#endif
  EK_REQUIRE(name == "auto", RangeError, "cpu kernel '" + name + "' is not available on this CPU or build");
  return base;
}

}  // namespace

// Every weight survives a round trip through bf16 unchanged.
[[maybe_unused]] static bool exactlyBf16(const float* w, int64_t count) {
  for (int64_t i = 0; i < count; ++i) {
    uint32_t u;
    std::memcpy(&u, &w[i], 4);
    if ((u & 0xffffu) != 0) return false;
  }
  return true;
}

static constexpr int kBf16Width = 32;

std::shared_ptr<PackedLinear> packLinear(const float* weight, const float* bias, int64_t n, int64_t k,
                                         const std::string& kernel, bool preferBf16) {
  EK_REQUIRE(n >= 1 && k >= 1, RangeError, "a projection needs at least one output and one input feature");
  EK_REQUIRE(weight != nullptr, TypeError, "projection weight is missing");
  const LinearBuild build = linearBuild(kernel);
  auto w = std::make_shared<PackedLinear>();
  w->n = n;
  w->k = k;
  w->bias.assign(static_cast<size_t>(n), 0.0f);
  if (bias != nullptr) std::copy(bias, bias + n, w->bias.begin());
#if defined(EK_HAVE_AVX512_KERNEL)
  if (preferBf16 && std::string(build.name) == "avx512" && cpuHasAvx512Bf16() && exactlyBf16(weight, n * k)) {
    w->nr = kBf16Width;
    w->kernel = "avx512-bf16";
    const int64_t panels = (n + kBf16Width - 1) / kBf16Width;
    const int64_t pairs = (k + 1) / 2;
    w->panelsBf16.assign(static_cast<size_t>(panels * pairs * kBf16Width * 2), 0);
    for (int64_t p = 0; p < panels; ++p) {
      for (int c = 0; c < kBf16Width && p * kBf16Width + c < n; ++c) {
        const float* src = weight + (p * kBf16Width + c) * k;
        for (int64_t kk = 0; kk < k; ++kk) {
          uint32_t u;
          std::memcpy(&u, &src[kk], 4);
          w->panelsBf16[((p * pairs + kk / 2) * kBf16Width + c) * 2 + (kk & 1)] = static_cast<uint16_t>(u >> 16);
        }
      }
    }
    return w;
  }
#else
  (void)preferBf16;
#endif
  w->nr = build.width;
  w->kernel = build.name;
  const int64_t panels = (n + w->nr - 1) / w->nr;
  w->panels.assign(static_cast<size_t>(panels * k * w->nr), 0.0f);
  for (int64_t p = 0; p < panels; ++p) {
    for (int c = 0; c < w->nr && p * w->nr + c < n; ++c) {
      const float* src = weight + (p * w->nr + c) * k;
      float* dst = w->panels.data() + p * k * w->nr + c;
      for (int64_t kk = 0; kk < k; ++kk) dst[kk * w->nr] = src[kk];
    }
  }
  return w;
}

std::shared_ptr<PackedLinear> packLinearCodes(const WeightCodes& src, const float* bias, int64_t n, int64_t k,
                                              const std::string& kernel, bool preferBf16) {
  EK_REQUIRE(n >= 1 && k >= 1, RangeError, "a projection needs at least one output and one input feature");
  EK_REQUIRE(src.codes != nullptr, TypeError, "projection weight codes are missing");
  EK_REQUIRE(src.format != WeightFormat::F32, TypeError, "fp32 weights are packed by packLinear");
  const bool scaled = weightFormatScaled(src.format);
  EK_REQUIRE(!scaled || src.rowScales != nullptr, TypeError, "e4m3 and e2m1 weights need their UE8M0 scales");
  EK_REQUIRE(src.format != WeightFormat::E2M1 || k % 2 == 0, RangeError,
             "e2m1 weights need an even number of inputs, got " + std::to_string(k));
  const LinearBuild build = linearBuild(kernel);
  auto w = std::make_shared<PackedLinear>();
  w->n = n;
  w->k = k;
  w->nr = build.width;
  w->kernel = build.name;
  w->format = src.format;
  w->bias.assign(static_cast<size_t>(n), 0.0f);
  if (bias != nullptr) std::copy(bias, bias + n, w->bias.begin());
  const int nr = w->nr;
  const int64_t panels = (n + nr - 1) / nr;
  const int64_t srcRow = weightRowBytes(src.format, k);
  const int64_t panelRow = weightRowBytes(src.format, nr);
  w->codePanels.assign(static_cast<size_t>(panels * k * panelRow), 0);
  for (int64_t p = 0; p < panels; ++p) {
    for (int c = 0; c < nr && p * nr + c < n; ++c) {
      const uint8_t* row = src.codes + (p * nr + c) * srcRow;
      uint8_t* dst = w->codePanels.data() + p * k * panelRow;
      for (int64_t kk = 0; kk < k; ++kk, dst += panelRow) {
        switch (src.format) {
          case WeightFormat::F32: std::memcpy(dst + 4 * c, row + 4 * kk, 4); break;
          case WeightFormat::BF16:
          case WeightFormat::F16: std::memcpy(dst + 2 * c, row + 2 * kk, 2); break;
          case WeightFormat::E4M3: dst[c] = row[kk]; break;
          case WeightFormat::E2M1: {
            const uint8_t code = (row[kk / 2] >> (4 * (kk & 1))) & 0xfu;
            const int half = nr / 2;
            dst[c % half] |= static_cast<uint8_t>(code << (c < half ? 0 : 4));
            break;
          }
        }
      }
    }
  }
  if (src.format == WeightFormat::E4M3) {
    w->panelHasNan.assign(static_cast<size_t>(panels), 0);
    const int64_t panelBytes = k * panelRow;
    for (int64_t p = 0; p < panels; ++p) {
      const uint8_t* codes = w->codePanels.data() + p * panelBytes;
      uint8_t nan = 0;
      for (int64_t i = 0; i < panelBytes; ++i) nan |= static_cast<uint8_t>((codes[i] & 0x7f) == 0x7f);
      w->panelHasNan[static_cast<size_t>(p)] = nan;
    }
  }
  if (scaled) {
    const int64_t blocks = (k + kScaleBlock - 1) / kScaleBlock;
    // Padding columns get the scale 1 (code 127) over their zero codes.
    w->scalePanels.assign(static_cast<size_t>(panels * blocks * nr), 127);
    for (int64_t p = 0; p < panels; ++p) {
      for (int c = 0; c < nr && p * nr + c < n; ++c) {
        for (int64_t b = 0; b < blocks; ++b) w->scalePanels[(p * blocks + b) * nr + c] = src.rowScales[(p * nr + c) * blocks + b];
      }
    }
  }
#if defined(EK_HAVE_AVX512_KERNEL)
  // e4m3 x 2^(s-127) is a normal float with at most 4 significant bits, so exact in bf16,
  // for s in [10, 246]: such weights become the bf16 kernel's panels straight from their
  // codes (no fp32 matrix on the way). Reading the codes inside that kernel instead was
  // measured slower here at every batch size: it is compute-bound on this CPU.
  if (preferBf16 && src.format == WeightFormat::E4M3 && std::string(build.name) == "avx512" && cpuHasAvx512Bf16() && nr == kBf16Width &&
      std::all_of(w->scalePanels.begin(), w->scalePanels.end(), [](uint8_t s) { return s >= 10 && s <= 246; })) {
    const int64_t blocks = (k + kScaleBlock - 1) / kScaleBlock;
    const int64_t pairs = (k + 1) / 2;
    w->panelsBf16.assign(static_cast<size_t>(panels * pairs * kBf16Width * 2), 0);
    for (int64_t p = 0; p < panels; ++p) {
      const uint8_t* codes = w->codePanels.data() + p * k * nr;
      const uint8_t* scales = w->scalePanels.data() + p * blocks * nr;
      for (int64_t kk = 0; kk < k; ++kk) {
        for (int c = 0; c < nr; ++c) {
          const float v = e4m3ToFloat(codes[kk * nr + c]) * ue8m0ToFloat(scales[(kk / kScaleBlock) * nr + c]);
          uint32_t u;
          std::memcpy(&u, &v, 4);
          w->panelsBf16[((p * pairs + kk / 2) * kBf16Width + c) * 2 + (kk & 1)] = static_cast<uint16_t>(u >> 16);
        }
      }
    }
    w->format = WeightFormat::F32;  // the panels hold the values themselves
    w->codePanels = {};
    w->scalePanels = {};
    w->kernel = "avx512-bf16";
  }
#else
  (void)preferBf16;
#endif
  return w;
}

namespace {

// Both entry points: rows of x (dense, or through rowIndex) or gathered table rows.
void runLinear(const float* x, int64_t m, int64_t lda, const PackedLinear& w, float* y, int64_t ldy, ThreadPool& pool,
               int threads, const int32_t* rowIndex, const GatheredRows* gather, double* packSeconds) {
  EK_REQUIRE(lda >= w.k && ldy >= w.n, RangeError, "projection strides are smaller than the rows");
  if (packSeconds != nullptr) *packSeconds = 0.0;
  if (m <= 0) return;
  LinearBuild build{};
  if (w.kernel == "avx512-bf16") {
#if defined(EK_HAVE_AVX512_KERNEL)
    EK_REQUIRE(cpuHasAvx512Bf16(), Error, "projection packed for AVX512-BF16 on a CPU without it");
    build = LinearBuild{"avx512-bf16", kBf16Width, avx512::linearTilesBf16, avx512::fmaPeakLoop};
#endif
  } else {
    build = linearBuild(w.kernel);
  }
  EK_REQUIRE(build.tiles != nullptr && build.width == w.nr, Error, "packed projection does not match its kernel build");
  const int64_t panels = (w.n + w.nr - 1) / w.nr;
  // Work items: row blocks x panel groups, enough of them to keep every thread busy and
  // few enough that each packs a reasonable block of x once per k block.
  const int64_t rowBlock = 192;
  const int64_t rowBlocks = (m + rowBlock - 1) / rowBlock;
  const int want = std::max(1, threads <= 0 ? pool.maxThreads() : std::min(threads, pool.maxThreads()));
  int64_t panelGroups = 1;
  // (one thread: one item per row block, which packs its rows once)
  while (want > 1 && rowBlocks * panelGroups < 4 * want && panelGroups * 2 <= panels) panelGroups *= 2;
  const int64_t groupSize = (panels + panelGroups - 1) / panelGroups;
  const int64_t items = rowBlocks * panelGroups;
  std::atomic<int64_t> packNanos{0};
  pool.parallelFor(items, threads, [&](int64_t begin, int64_t end) {
    int64_t mine = 0;
    for (int64_t item = begin; item < end; ++item) {
      const int64_t rb = item / panelGroups, pg = item % panelGroups;
      const int64_t r0 = rb * rowBlock, r1 = std::min(m, r0 + rowBlock);
      const int64_t p0 = pg * groupSize, p1 = std::min(panels, p0 + groupSize);
      if (p0 < p1) build.tiles(x, lda, w, y, ldy, r0, r1, p0, p1, rowIndex, gather, packSeconds ? &mine : nullptr);
    }
    packNanos += mine;
  });
  if (packSeconds != nullptr) *packSeconds = static_cast<double>(packNanos.load()) * 1e-9 / static_cast<double>(std::min<int64_t>(want, items));
}

}  // namespace

void linearCpu(const float* x, int64_t m, int64_t lda, const PackedLinear& w, float* y, int64_t ldy,
               ThreadPool& pool, int threads, const int32_t* rowIndex) {
  runLinear(x, m, lda, w, y, ldy, pool, threads, rowIndex, nullptr, nullptr);
}

void linearGatherCpu(const GatheredRows& rows, int64_t m, const PackedLinear& w, float* y, int64_t ldy, ThreadPool& pool,
                     int threads, double* packSeconds) {
  EK_REQUIRE(rows.table.data != nullptr && rows.rowIds != nullptr && rows.rowsPerToken >= 1, TypeError, "gathered rows are missing");
  EK_REQUIRE(static_cast<int64_t>(rows.rowsPerToken) * rows.table.cols == w.k, RangeError,
             "gathered rows have " + std::to_string(static_cast<int64_t>(rows.rowsPerToken) * rows.table.cols) + " features but the projection takes " +
                 std::to_string(w.k));
  runLinear(nullptr, m, w.k, w, y, ldy, pool, threads, nullptr, &rows, packSeconds);
}

void gatherPackedCpu(const GatheredRows& rows, int64_t m, const std::string& kernel, ThreadPool& pool, int threads) {
  EK_REQUIRE(rows.table.data != nullptr && rows.rowIds != nullptr && rows.rowsPerToken >= 1, TypeError, "gathered rows are missing");
  const int64_t k = static_cast<int64_t>(rows.rowsPerToken) * rows.table.cols;
  EK_REQUIRE(kernel != "avx512-bf16" || cpuHasAvx512Bf16(), RangeError, "this CPU has no AVX512-BF16");
  EK_REQUIRE(kernel != "avx512" || cpuHasAvx512(), RangeError, "this CPU has no AVX-512");
  EK_REQUIRE(kernel != "avx2" || cpuHasAvx2(), RangeError, "this CPU has no AVX2/FMA");
  // Each build's own row block, the one its buffer is sized for (one source of truth:
  // a block of another build's size overran the AVX2 buffer).
  int64_t blockRows = baseline::gatheredBlockRows();
#if defined(EK_HAVE_AVX512_KERNEL)
  if (kernel == "avx512" || kernel == "avx512-bf16") blockRows = avx512::gatheredBlockRows();
#endif
#if defined(EK_HAVE_AVX2_KERNEL)
  if (kernel == "avx2") blockRows = avx2::gatheredBlockRows();
#endif
  const int64_t blocks = (m + blockRows - 1) / blockRows;
  pool.parallelFor(blocks, threads, [&](int64_t begin, int64_t end) {
    thread_local std::vector<float> floats;
    thread_local std::vector<uint32_t> pairs;
    for (int64_t b = begin; b < end; ++b) {
      const int64_t r0 = b * blockRows, n = std::min(blockRows, m - r0);
#if defined(EK_HAVE_AVX512_KERNEL)
      if (kernel == "avx512-bf16") {
        pairs.resize(std::max<size_t>(pairs.size(), avx512::gatheredBlockPairs(k)));
        for (int64_t pb = 0; pb < avx512::gatheredPairBlocks(k); ++pb) avx512::packGatheredBlockBf16(rows, r0, n, k, pb, pairs.data());
        continue;
      }
      if (kernel == "avx512") {
        floats.resize(std::max<size_t>(floats.size(), avx512::gatheredBlockFloats(k)));
        for (int64_t kb = 0; kb < avx512::gatheredKBlocks(k); ++kb) avx512::packGatheredBlock(rows, r0, n, k, kb, floats.data());
        continue;
      }
#endif
#if defined(EK_HAVE_AVX2_KERNEL)
      if (kernel == "avx2") {
        floats.resize(std::max<size_t>(floats.size(), avx2::gatheredBlockFloats(k)));
        for (int64_t kb = 0; kb < avx2::gatheredKBlocks(k); ++kb) avx2::packGatheredBlock(rows, r0, n, k, kb, floats.data());
        continue;
      }
#endif
      floats.resize(std::max<size_t>(floats.size(), baseline::gatheredBlockFloats(k)));
      for (int64_t kb = 0; kb < baseline::gatheredKBlocks(k); ++kb) baseline::packGatheredBlock(rows, r0, n, k, kb, floats.data());
    }
  });
}

double fmaPeakGflops(ThreadPool& pool, int threads, double seconds, const std::string& kernel) {
  const LinearBuild build = linearBuild(kernel);
  const int n = std::max(1, threads <= 0 ? pool.maxThreads() : std::min(threads, pool.maxThreads()));
  // Calibrate the iteration count on one thread, then run every thread at once.
  float sink = 0.0f;
  int64_t iterations = 1 << 16;
  for (;;) {
    const auto t0 = std::chrono::steady_clock::now();
    build.peakLoop(iterations, &sink);
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (dt > seconds / 4 || iterations > (int64_t{1} << 40)) {
      iterations = static_cast<int64_t>(static_cast<double>(iterations) * seconds / std::max(dt, 1e-9));
      break;
    }
    iterations *= 4;
  }
  std::vector<float> sinks(static_cast<size_t>(n));
  std::vector<double> flops(static_cast<size_t>(n));
  const auto t0 = std::chrono::steady_clock::now();
  pool.parallelFor(n, n, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) flops[i] = build.peakLoop(iterations, &sinks[i]);
  });
  const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  double total = 0.0;
  for (double f : flops) total += f;
  return total / dt / 1e9;
}

}  // namespace engram
