// The functions each binding file exports to addon.cpp.
#pragma once
#include "napi_util.hpp"

namespace engram {
Napi::Value NgramHashes(const Napi::CallbackInfo& info);
Napi::Value NgramHashesAsync(const Napi::CallbackInfo& info);
}  // namespace engram
