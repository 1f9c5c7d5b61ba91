// mapFile: a file as an external ArrayBuffer over a private memory mapping, so a table
// of many GB is paged in on demand instead of read into RAM. The mapping is private
// and writable: a write from JS changes this process's copy only, never the file (and
// never faults, as a read-only mapping would).
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <vector>
#include <atomic>
#include <map>
#include <mutex>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "binding/napi_util.hpp"
#include "binding/registry.hpp"
#include "binding/mapped_memory.hpp"
#include "binding/output_pool.hpp"
#include "binding/owned_buffers.hpp"
#include "common/mapped_guard.hpp"

namespace engram {

namespace {

// Opens and maps `path` privately (NORESERVE: a writable private mapping of a 100 GB file
// must not be charged to RAM + swap up front; only pages JS writes to get private
// copies). maxSize: larger files are refused before mapping. Returns the base or null
// for an empty file.
void* mapPrivately(const Napi::Env& env, const std::string& path, size_t maxSize, size_t* size) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) throwJs(env, ErrorKind::Error, "cannot open '" + path + "': " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throwJs(env, ErrorKind::Error, "'" + path + "' is not a regular file");
  }
  *size = static_cast<size_t>(st.st_size);
  if (*size > maxSize) {
    ::close(fd);
    throwJs(env, ErrorKind::RangeError,
            "'" + path + "' is " + std::to_string(*size) + " bytes: files over 4 GiB cannot be mapped into one ArrayBuffer (use a mapped file handle)");
  }
  if (*size == 0) {
    ::close(fd);
    return nullptr;
  }
  void* base = ::mmap(nullptr, *size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE, fd, 0);
  const int mapErrno = errno;
  if (base == MAP_FAILED) {
    ::close(fd);
    throwJs(env, ErrorKind::Error, "cannot map '" + path + "': " + std::strerror(mapErrno));
  }
  // The guard keeps fd (to map the tail again after the file shrinks) and closes it when
  // the mapping goes: a truncated file then fails the read that saw it, not the process.
  registerFileMapping(base, *size, fd, path);
  return base;
}

std::string pathArgument(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsString()) throwJs(info.Env(), ErrorKind::TypeError, "path must be a string");
  return info[0].As<Napi::String>().Utf8Value();
}

}  // namespace

Napi::Value MapFile(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  // Node 20 refuses external ArrayBuffers over 4 GiB, and node-addon-api's failure path
  // then frees twice: such files are refused before mapping.
  size_t size = 0;
  void* base = mapPrivately(env, pathArgument(info), size_t{1} << 32, &size);
  if (base == nullptr) return Napi::ArrayBuffer::New(env, 0);
  OwnedMemory owner(base, [size](const void* data) {
    unregisterFileMapping(const_cast<void*>(data));
    ::munmap(const_cast<void*>(data), size);
  });
  return newOwnedArrayBuffer(env, base, size, std::move(owner));
}

}  // namespace engram

namespace engram {

// Asks the kernel to back the 2 MiB-aligned interior of an ArrayBuffer with huge pages
// (transparent huge pages in "madvise" mode): a large table gathered at random rows
// then costs far fewer TLB misses, and filling it far fewer page faults. Best effort:
// returns whether the advice was taken.
Napi::Value AdviseHugePages(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsArrayBuffer()) throwJs(env, ErrorKind::TypeError, "buffer must be an ArrayBuffer");
  Napi::ArrayBuffer buffer = info[0].As<Napi::ArrayBuffer>();
  bool taken = false;
#ifdef MADV_HUGEPAGE
  constexpr uintptr_t kHuge = uintptr_t{2} << 20;
  const uintptr_t begin = reinterpret_cast<uintptr_t>(buffer.Data());
  const uintptr_t end = begin + buffer.ByteLength();
  const uintptr_t first = (begin + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t last = end & ~(kHuge - 1);
  if (last > first) taken = ::madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE) == 0;
#endif
  return Napi::Boolean::New(env, taken);
}

// The first argument: a byte count in [0, 2^maxLog2].
size_t byteLengthArgument(const Napi::CallbackInfo& info, int maxLog2) {
  if (info.Length() < 1 || !info[0].IsNumber()) throwJs(info.Env(), ErrorKind::TypeError, "byteLength must be a number");
  const double requested = info[0].As<Napi::Number>().DoubleValue();
  if (!(requested >= 0 && requested <= std::ldexp(1.0, maxLog2) && requested == static_cast<double>(static_cast<uint64_t>(requested)))) {
    throwJs(info.Env(), ErrorKind::RangeError, "byteLength must be an integer in [0, 2^" + std::to_string(maxLog2) + "], got " + std::to_string(requested));
  }
  return static_cast<size_t>(requested);
}

// A zeroed ArrayBuffer for a large output: recycled memory (zeroed here) or a fresh
// anonymous mapping. Reported to V8 as external memory; back to the pool when collected.
Napi::Value AllocateOutput(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  const size_t bytes = byteLengthArgument(info, 46);
  if (bytes == 0) return Napi::ArrayBuffer::New(env, 0);
  // zeroed = false: the caller's kernel writes every byte (hashing), so recycled memory
  // need not be cleared first.
  const bool zeroed = info.Length() < 2 || !info[1].IsBoolean() || info[1].As<Napi::Boolean>().Value();
  PooledMemory m;
  try {
    m = takePooled(bytes);
  } catch (const EngramError& e) {
    throwJs(env, e.kind(), std::string("cannot allocate an output: ") + e.what());
  }
  if (m.data == nullptr) return Napi::ArrayBuffer::New(env, bytes);  // past the cap: V8's own (zeroed)
  if (zeroed && m.recycled) std::memset(m.data, 0, bytes);  // the bytes past `bytes` are never seen
  void* data = m.data;
  const size_t mapped = m.mapped;
  // Back to the pool when JS has collected the buffer and no call in flight holds it.
  OwnedMemory owner(data, [mapped](const void* p) { givePooled(const_cast<void*>(p), mapped); });
  return newOwnedArrayBuffer(env, data, bytes, std::move(owner));
}

// Memory for a long-lived array the library keeps and passes to many calls (a
// tokenizer's lookup, say): owned here, so an async call pins it instead of copying it
// (see CallHold in napi_util.hpp). Zeroed.
Napi::Value AllocateOwned(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  const size_t bytes = byteLengthArgument(info, 32);
  if (bytes == 0) return Napi::ArrayBuffer::New(env, 0);
  // As with the pool: finalizers run only from the event loop, so a synchronous loop gets
  // nothing back; past the cap the arrays are V8's own (correct, only copied by async calls).
  static std::atomic<size_t> outstanding{0};
  constexpr size_t kOutstandingBytes = size_t{256} << 20;
  if (outstanding.fetch_add(bytes) + bytes > kOutstandingBytes) {
    outstanding.fetch_sub(bytes);
    return Napi::ArrayBuffer::New(env, bytes);
  }
  void* data = std::calloc(1, bytes);
  if (data == nullptr) {
    outstanding.fetch_sub(bytes);
    throwJs(env, ErrorKind::RangeError, "cannot allocate " + std::to_string(bytes) + " bytes");
  }
  OwnedMemory owner(data, [bytes](const void* p) {
    std::free(const_cast<void*>(p));
    outstanding.fetch_sub(bytes);
  });
  return newOwnedArrayBuffer(env, data, bytes, std::move(owner));
}

}  // namespace engram

namespace engram {

// A file of any size mapped privately (see MapFile), held natively: JS gets an opaque
// handle, ArrayBuffer views of at most 4 GiB (mappedFileView), and passes the handle with
// an offset where a table region is bigger than one ArrayBuffer can be.
Napi::Value MapFileHandle(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  const std::string path = pathArgument(info);
  auto mapped = std::make_shared<MappedFile>();
  mapped->base = mapPrivately(env, path, SIZE_MAX, &mapped->size);
  if (mapped->base == nullptr) throwJs(env, ErrorKind::Error, "'" + path + "' is empty");
  return wrapMapping(env, std::move(mapped));
}

Napi::Value wrapMapping(const Napi::Env& env, MappedHandle mapped) {
  // Anonymous memory is the process's own (a file's pages the OS can drop): V8 hears of it.
  const int64_t bytes = mapped && mapped->anonymous ? static_cast<int64_t>(mapped->size) : 0;
  auto* holder = new MappedHandle(std::move(mapped));
  return makeHandle(env, HandleKind::MappedFile, holder, bytes);
}

MappedHandle mapAnonymous(size_t bytes) {
  auto mapped = std::make_shared<MappedFile>();
  void* base = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  EK_REQUIRE(base != MAP_FAILED, RangeError, "cannot reserve " + std::to_string(bytes) + " bytes of memory: " + std::strerror(errno));
#ifdef MADV_HUGEPAGE
  ::madvise(base, bytes, MADV_HUGEPAGE);  // best effort: fewer TLB misses on random rows
#endif
  mapped->base = base;
  mapped->size = bytes;
  mapped->anonymous = true;
  return mapped;
}

const MappedFile* mappedFileOf(const Napi::Value& v) {
  const MappedHandle* h = handleData<MappedHandle>(v, HandleKind::MappedFile);
  return h == nullptr ? nullptr : h->get();
}

bool mappedRegion(const Napi::Value& v, uint8_t** base, size_t* size) {
  const MappedFile* m = mappedFileOf(v);
  if (m == nullptr) return false;
  *base = static_cast<uint8_t*>(m->base);
  *size = m->size;
  return true;
}

Napi::Value MappedFileView(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  if (info.Length() < 3 || mappedFileOf(info[0]) == nullptr || !info[1].IsNumber() || !info[2].IsNumber()) {
    throwJs(env, ErrorKind::TypeError, "mappedFileView(handle, offset, length) needs a mapped file handle and two numbers");
  }
  const MappedHandle keep = *handleData<MappedHandle>(info[0], HandleKind::MappedFile);  // checked above
  const double offset = info[1].As<Napi::Number>().DoubleValue();
  const double length = info[2].As<Napi::Number>().DoubleValue();
  if (!(offset >= 0 && length >= 0 && offset + length <= static_cast<double>(keep->size)) || length > 4294967296.0) {
    throwJs(env, ErrorKind::RangeError, "view out of range or over 4 GiB");
  }
  if (length == 0) return Napi::ArrayBuffer::New(env, 0);
  // The view (and any call in flight over it) keeps the mapping alive.
  return newOwnedArrayBuffer(env, static_cast<uint8_t*>(keep->base) + static_cast<size_t>(offset), static_cast<size_t>(length), keep);
}

Napi::Value MappedFileSize(const Napi::CallbackInfo& info) {
  const MappedFile* m = info.Length() > 0 ? mappedFileOf(info[0]) : nullptr;
  if (m == nullptr) throwJs(info.Env(), ErrorKind::TypeError, "expected a mapped file handle");
  return Napi::Number::New(info.Env(), static_cast<double>(m->size));
}

}  // namespace engram

namespace engram {

// Drops the file's clean pages from the OS page cache (posix_fadvise DONTNEED), so a
// benchmark can read it cold without root. Pages mapped by a process stay. Returns
// whether the advice was taken.
Napi::Value DropFileCache(const Napi::CallbackInfo& info) {
  const std::string path = pathArgument(info);
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) throwJs(info.Env(), ErrorKind::Error, "cannot open '" + path + "': " + std::strerror(errno));
  const bool taken = ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) == 0;
  ::close(fd);
  return Napi::Boolean::New(info.Env(), taken);
}

}  // namespace engram

namespace engram {

// Maps every page of a region now (madvise MADV_POPULATE_READ, or a read per page where
// the kernel lacks it): a memory-mapped table otherwise pays a page fault on the first
// touch of each page, which a benchmark of "the table in RAM" must not count.
Napi::Value PrefaultRegion(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  const Napi::Object o = argObject(info);
  const int64_t length = intField(o, "byteLength", 0, INT64_MAX / 2);
  uint8_t* base = bufferRegion(o, "buffer", "byteOffset", length, false);
  if (length == 0) return env.Undefined();
  runSync(env, [&] {
    const uintptr_t page = 4096;
    const uintptr_t begin = reinterpret_cast<uintptr_t>(base) & ~(page - 1);
    const uintptr_t end = reinterpret_cast<uintptr_t>(base) + static_cast<uintptr_t>(length);
#ifdef MADV_POPULATE_READ
    if (::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_POPULATE_READ) == 0) return;
#endif
    volatile uint8_t sink = 0;
    for (uintptr_t p = begin; p < end; p += page) sink = sink + *reinterpret_cast<const volatile uint8_t*>(std::max(p, reinterpret_cast<uintptr_t>(base)));
    (void)sink;
  });
  return env.Undefined();
}

// madvise(advice) on the page-aligned interior of the region { buffer, byteOffset,
// byteLength }; whether it was taken.
static Napi::Value adviseRegionInterior(const Napi::CallbackInfo& info, int advice) {
  const Napi::Object o = argObject(info);
  const int64_t length = intField(o, "byteLength", 0, INT64_MAX / 2);
  uint8_t* base = bufferRegion(o, "buffer", "byteOffset", length, false);
  const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t first = (reinterpret_cast<uintptr_t>(base) + page - 1) & ~(page - 1);
  const uintptr_t last = (reinterpret_cast<uintptr_t>(base) + static_cast<uintptr_t>(length)) & ~(page - 1);
  const bool taken = last > first && ::madvise(reinterpret_cast<void*>(first), last - first, advice) == 0;
  return Napi::Boolean::New(info.Env(), taken);
}

// Random-access advice for a region (the page-aligned interior): a table's rows are read
// at hashed, random offsets, so readahead on a fault of a memory-mapped table would read
// (or, for a sparse file, zero) 128 KiB and more to serve one 264-byte row. Best effort:
// returns whether the advice was taken.
Napi::Value AdviseRandom(const Napi::CallbackInfo& info) { return adviseRegionInterior(info, MADV_RANDOM); }

// releaseMappedPages({ buffer, byteOffset, byteLength }): drops this process's mapping of
// the region's pages (MADV_DONTNEED on its page-aligned interior), so that the OS can then
// evict them from its page cache (drop_caches leaves pages a process maps): the one way to
// measure a memory-mapped table cold within one process. For read-only tables only (a
// written page of a private mapping would lose what was written). Benchmarks only.
Napi::Value ReleaseMappedPages(const Napi::CallbackInfo& info) { return adviseRegionInterior(info, MADV_DONTNEED); }

// adviseRowsAsync({ buffer, byteOffset, byteLength, rowBytes, rows }): the pages of the
// given rows of a region (rows counted from byteOffset) read ahead and mapped, on a worker,
// so that a forward reading them from a memory-mapped table later meets no disk read and
// no page fault: a read of one byte a page, with MADV_WILLNEED on all the rest once one
// read has to wait (the kernel then starts their reads at once). A hint: resolves with
// { pages: touched, cold: whether a read had to wait }.
Napi::Value AdviseRowsAsync(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  const Napi::Object o = argObject(info);
  CallHold hold;
  const int64_t length = intField(o, "byteLength", 0, INT64_MAX / 2);
  const uint8_t* base = bufferRegion(o, "buffer", "byteOffset", length, false, &hold);
  const int64_t rowBytes = intField(o, "rowBytes", 1, INT32_MAX);
  const Napi::Value rowsValue = o.Get("rows");
  if (!rowsValue.IsTypedArray() || rowsValue.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
    throwJs(env, ErrorKind::TypeError, "rows must be an Int32Array");
  }
  const int64_t count = static_cast<int64_t>(rowsValue.As<Napi::TypedArray>().ElementLength());
  const int32_t* rowsIn = typedField<int32_t>(o, "rows", napi_int32_array, count, false);
  auto rows = std::make_shared<std::vector<int32_t>>(rowsIn, rowsIn + count);  // copied: the worker owns it
  for (int32_t r : *rows) {
    if (r < 0 || static_cast<int64_t>(r) * rowBytes + rowBytes > length) {
      throwJs(env, ErrorKind::RangeError, "rows: row " + std::to_string(r) + " of " + std::to_string(rowBytes) + " bytes lies outside the region's " + std::to_string(length) + " bytes");
    }
  }
  auto touched = std::make_shared<int64_t>(0);
  auto waited = std::make_shared<bool>(false);
  return runAsync(
      env,
      [base, rowBytes, rows, touched, waited] {
        const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
        std::vector<uintptr_t> pages;
        pages.reserve(rows->size() * 2);
        for (int32_t r : *rows) {
          const uintptr_t first = reinterpret_cast<uintptr_t>(base + static_cast<int64_t>(r) * rowBytes) & ~(page - 1);
          const uintptr_t last = reinterpret_cast<uintptr_t>(base + static_cast<int64_t>(r) * rowBytes + rowBytes - 1) & ~(page - 1);
          for (uintptr_t p = first; p <= last; p += page) pages.push_back(p);
        }
        std::sort(pages.begin(), pages.end());
        pages.erase(std::unique(pages.begin(), pages.end()), pages.end());
        // Pages are touched in order; the first touch that waits (longer than a page-cache
        // hit could take) means the rows are cold, and every page left is then advised at
        // once, so the disk serves them together. Warm rows cost a touch each, no syscall
        // (madvise for every page cost 3% of a warm decode step on 2 cores).
        const uintptr_t floor = reinterpret_cast<uintptr_t>(base);  // the region may start inside a page
        volatile uint8_t sink = 0;
        bool advised = false;
        for (size_t k = 0; k < pages.size(); ++k) {
          const auto t0 = std::chrono::steady_clock::now();
          sink = sink + *reinterpret_cast<const volatile uint8_t*>(std::max(pages[k], floor));
          if (advised || std::chrono::steady_clock::now() - t0 < std::chrono::microseconds(20)) continue;
          advised = true;
          for (size_t i = k + 1; i < pages.size();) {
            size_t j = i + 1;
            while (j < pages.size() && pages[j] == pages[j - 1] + page) ++j;
            ::madvise(reinterpret_cast<void*>(pages[i]), (j - i) * page, MADV_WILLNEED);  // best effort
            i = j;
          }
        }
        (void)sink;
        *touched = static_cast<int64_t>(pages.size());
        *waited = advised;
      },
      std::move(hold), [touched, waited](Napi::Env e) {
        Napi::Object r = Napi::Object::New(e);
        r.Set("pages", Napi::Number::New(e, static_cast<double>(*touched)));
        r.Set("cold", Napi::Boolean::New(e, *waited));
        return r;
      });
}

}  // namespace engram

namespace engram {

// copyRegion({ src, srcByteOffset, dst, dstByteOffset, byteLength, threads }): bytes from
// one region (ArrayBuffer or mapped file) to another, on the addon's threads: a table of
// any size copied out of its mapping into process memory, byte for byte.
Napi::Value CopyRegion(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  const Napi::Object o = argObject(info);
  const int64_t length = intField(o, "byteLength", 0, INT64_MAX / 2);
  const uint8_t* src = bufferRegion(o, "src", "srcByteOffset", length, false);
  uint8_t* dst = bufferRegion(o, "dst", "dstByteOffset", length, false);
  const int threads = static_cast<int>(intField(o, "threads", 0, 4096));
  if (src < dst + length && dst < src + length && length > 0) throwJs(env, ErrorKind::RangeError, "copyRegion: the regions overlap");
  constexpr int64_t kChunk = int64_t{64} << 20;
  runSync(env, [&] {
    addonState(env).pool.parallelFor((length + kChunk - 1) / kChunk, threads, [&](int64_t begin, int64_t end) {
      for (int64_t c = begin; c < end; ++c) {
        const int64_t at = c * kChunk;
        std::memcpy(dst + at, src + at, static_cast<size_t>(std::min(kChunk, length - at)));
      }
    });
  });
  return env.Undefined();
}

}  // namespace engram

namespace engram {

// readFileRegion({ path, offset, byteLength, dst, dstByteOffset, threads }): bytes of a
// file read with pread into a region, in parallel chunks. Unlike reading through a
// mapping, it maps no page of the file into this process (so the OS can still evict them).
Napi::Value ReadFileRegion(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  const Napi::Object o = argObject(info);
  const std::string path = stringField(o, "path", "");
  const int64_t offset = intField(o, "offset", 0, INT64_MAX / 2);
  const int64_t length = intField(o, "byteLength", 0, INT64_MAX / 2);
  uint8_t* dst = bufferRegion(o, "dst", "dstByteOffset", length, false);
  const int threads = static_cast<int>(intField(o, "threads", 0, 4096));
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) throwJs(env, ErrorKind::Error, "cannot open '" + path + "': " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throwJs(env, ErrorKind::TypeError, "'" + path + "' is not a regular file");
  }
  if (st.st_size < offset + length) {
    ::close(fd);
    throwJs(env, ErrorKind::RangeError, "'" + path + "' is shorter than " + std::to_string(offset + length) + " bytes");
  }
  constexpr int64_t kChunk = int64_t{16} << 20;
  try {
    runSync(env, [&] {
      addonState(env).pool.parallelFor((length + kChunk - 1) / kChunk, threads, [&](int64_t begin, int64_t end) {
        for (int64_t c = begin; c < end; ++c) {
          int64_t at = c * kChunk;
          const int64_t stop = std::min(length, at + kChunk);
          while (at < stop) {
            const ssize_t n = ::pread(fd, dst + at, static_cast<size_t>(stop - at), offset + at);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) EK_THROW(Error, "reading '" + path + "' failed");
            at += n;
          }
        }
      });
    });
  } catch (...) {
    ::close(fd);
    throw;
  }
  ::close(fd);
  return env.Undefined();
}

EK_EXPORT_FUNCTIONS(
    {"adviseHugePages", AdviseHugePages},
    {"adviseRandom", AdviseRandom},
    {"adviseRowsAsync", AdviseRowsAsync},
    {"releaseMappedPages", ReleaseMappedPages},
    {"allocateOutput", AllocateOutput},
    {"mapFileHandle", MapFileHandle},
    {"mappedFileView", MappedFileView},
    {"mappedFileSize", MappedFileSize},
    {"mapFile", MapFile},
    {"allocateOwned", AllocateOwned},
    {"prefaultRegion", PrefaultRegion},
    {"readFileRegion", ReadFileRegion},
    {"copyRegion", CopyRegion},
    {"dropFileCache", DropFileCache});

}  // namespace engram
