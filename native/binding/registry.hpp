// The addon's exported functions, registered by the binding file that defines them: each
// <capability>.cpp ends with EK_EXPORT_FUNCTIONS, and the module entry (addon.cpp) installs
// whatever was registered. A new native function touches its binding file and the TS type
// of its capability (src/native/), nothing else.
#pragma once
#include <initializer_list>
#include <vector>

#include <napi.h>

namespace engram {

struct NativeFunction {
  const char* name;
  Napi::Value (*fn)(const Napi::CallbackInfo&);
};

// Adds `functions` to the registry (at static initialisation); returns true.
bool registerFunctions(std::initializer_list<NativeFunction> functions);
const std::vector<NativeFunction>& registeredFunctions();

}  // namespace engram

#define EK_EXPORT_FUNCTIONS(...) \
  [[maybe_unused]] static const bool ek_functions_registered = ::engram::registerFunctions({__VA_ARGS__})
