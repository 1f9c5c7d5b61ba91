// Module entry: installs the functions each binding file registered (registry.hpp) and
// owns the per-instance state.
#include "binding/napi_util.hpp"
#include "binding/registry.hpp"

namespace engram {

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  env.SetInstanceData(new AddonState());
  for (const NativeFunction& f : registeredFunctions()) exports.Set(f.name, Napi::Function::New(env, f.fn, f.name));
  return exports;
}

}  // namespace

std::vector<NativeFunction>& functionRegistry() {
  static std::vector<NativeFunction> functions;  // built before main: no locking needed
  return functions;
}

bool registerFunctions(std::initializer_list<NativeFunction> functions) {
  functionRegistry().insert(functionRegistry().end(), functions.begin(), functions.end());
  return true;
}

const std::vector<NativeFunction>& registeredFunctions() { return functionRegistry(); }

}  // namespace engram

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return engram::Init(env, exports); }

NODE_API_MODULE(engram_kernels, InitModule)
