// The functions each binding file exports to addon.cpp.
#pragma once
#include "napi_util.hpp"

namespace engram {
Napi::Value NgramHashes(const Napi::CallbackInfo& info);
Napi::Value NgramHashesAsync(const Napi::CallbackInfo& info);
Napi::Value PackLinear(const Napi::CallbackInfo& info);
Napi::Value Linear(const Napi::CallbackInfo& info);
Napi::Value LinearKernel(const Napi::CallbackInfo& info);
Napi::Value GatherRows(const Napi::CallbackInfo& info);
Napi::Value EngramForward(const Napi::CallbackInfo& info);
Napi::Value EngramForwardAsync(const Napi::CallbackInfo& info);
Napi::Value EngramUploadCuda(const Napi::CallbackInfo& info);
Napi::Value ConvertTable(const Napi::CallbackInfo& info);
Napi::Value FillRandom(const Napi::CallbackInfo& info);
Napi::Value MapFile(const Napi::CallbackInfo& info);
Napi::Value MapFileHandle(const Napi::CallbackInfo& info);
Napi::Value MappedFileView(const Napi::CallbackInfo& info);
Napi::Value MappedFileSize(const Napi::CallbackInfo& info);
Napi::Value MoeRoute(const Napi::CallbackInfo& info);
Napi::Value MoeLayout(const Napi::CallbackInfo& info);
Napi::Value MoeRouteAsync(const Napi::CallbackInfo& info);
Napi::Value MoeLayoutAsync(const Napi::CallbackInfo& info);
Napi::Value MoeExperts(const Napi::CallbackInfo& info);
Napi::Value MoeExpertsAsync(const Napi::CallbackInfo& info);
Napi::Value V41Forward(const Napi::CallbackInfo& info);
Napi::Value V41ForwardAsync(const Napi::CallbackInfo& info);
Napi::Value DequantizeBlockFp8(const Napi::CallbackInfo& info);
Napi::Value QuantizeWeights(const Napi::CallbackInfo& info);
Napi::Value GatherPacked(const Napi::CallbackInfo& info);
Napi::Value MoeUploadCuda(const Napi::CallbackInfo& info);
Napi::Value MoeForwardCuda(const Napi::CallbackInfo& info);
Napi::Value MoeForwardCudaAsync(const Napi::CallbackInfo& info);
Napi::Value DequantizeWeights(const Napi::CallbackInfo& info);
Napi::Value V41UploadCuda(const Napi::CallbackInfo& info);
Napi::Value AdviseHugePages(const Napi::CallbackInfo& info);
Napi::Value AdviseRandom(const Napi::CallbackInfo& info);
Napi::Value PeakGflops(const Napi::CallbackInfo& info);
Napi::Value ReadRows(const Napi::CallbackInfo& info);
Napi::Value PrefaultRegion(const Napi::CallbackInfo& info);
Napi::Value ReadFileRegion(const Napi::CallbackInfo& info);
Napi::Value CopyRegion(const Napi::CallbackInfo& info);
Napi::Value DropFileCache(const Napi::CallbackInfo& info);
Napi::Value PagerCreate(const Napi::CallbackInfo& info);
Napi::Value PagerAcquire(const Napi::CallbackInfo& info);
Napi::Value PagerWait(const Napi::CallbackInfo& info);
Napi::Value PagerWaitAsync(const Napi::CallbackInfo& info);
Napi::Value PagerRelease(const Napi::CallbackInfo& info);
Napi::Value PagerSetHotRows(const Napi::CallbackInfo& info);
Napi::Value PagerStatsOf(const Napi::CallbackInfo& info);
Napi::Value PagerResetStats(const Napi::CallbackInfo& info);
}  // namespace engram
