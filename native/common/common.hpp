// Shared by every kernel family: the host/device qualifier and the error type.
#pragma once
#include <stdexcept>
#include <string>

#ifdef __CUDACC__
#define EK_HD __host__ __device__ __forceinline__
#else
#define EK_HD inline
#endif

namespace engram {

// Every failure in native code is a C++ exception (never abort()): the binding turns it
// into a JS error. `kind` picks the JS error class.
enum class ErrorKind { Error, TypeError, RangeError };

// __FILE__ relative to the source tree: "[cuda/pager.cpp:259]", never the build machine's
// checkout. gcc's -fmacro-prefix-map does this for C++; nvcc expands __FILE__ in its own
// front end, so the CMake file also passes the root (ENGRAM_SOURCE_ROOT) to strip here.
inline const char* sourceRelativePath(const char* file) {
#ifdef ENGRAM_SOURCE_ROOT
  const char* root = ENGRAM_SOURCE_ROOT;
  const char* f = file;
  while (*root != '\0' && *f == *root) ++root, ++f;
  if (*root == '\0') return f;
#endif
  return file;
}

class EngramError : public std::runtime_error {
 public:
  EngramError(ErrorKind kind, const std::string& msg, const char* file, int line)
      : std::runtime_error(msg + " [" + sourceRelativePath(file) + ":" + std::to_string(line) + "]"), kind_(kind) {}
  ErrorKind kind() const { return kind_; }

 private:
  ErrorKind kind_;
};

}  // namespace engram

#define EK_THROW(kind, msg) throw ::engram::EngramError(::engram::ErrorKind::kind, (msg), __FILE__, __LINE__)
#define EK_REQUIRE(cond, kind, msg) \
  do {                              \
    if (!(cond)) EK_THROW(kind, msg); \
  } while (0)
