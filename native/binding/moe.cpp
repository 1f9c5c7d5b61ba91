// MoE routing and dispatch layout.
#include <limits>

#include "binding/napi_util.hpp"
#include "binding/registry.hpp"
#include "common/device.hpp"
#include "moe/moe_ops.hpp"
#include "binding/table_args.hpp"

namespace engram {

namespace {

// experts, topk, groups, topkGroups, scoreFunc, gateTemp, routeScale, normEps (hasBias
// is left to the caller).
RouteParams readRouteParams(const Napi::Object& o) {
  RouteParams p{};
  p.experts = static_cast<int>(intField(o, "experts", 1, 1 << 20));
  p.topk = static_cast<int>(intField(o, "topk", 1, 1 << 20));
  p.groups = static_cast<int>(intField(o, "groups", 1, 64));
  p.topkGroups = static_cast<int>(intField(o, "topkGroups", 1, 64));
  p.func = static_cast<ScoreFunc>(intField(o, "scoreFunc", 0, 2));
  p.gateTemp = static_cast<float>(floatField(o, "gateTemp", 1e-30, std::numeric_limits<float>::max()));
  p.routeScale = static_cast<float>(floatField(o, "routeScale", 1e-30, std::numeric_limits<float>::max()));
  p.normEps = static_cast<float>(floatField(o, "normEps", 0, std::numeric_limits<float>::max()));
  return p;
}

// The per-expert biases (bias steers selection; biasVl replaces it where imageMask is set)
// and the image mask; sets p->hasBias.
void readSelectionInputs(const Napi::Object& o, int64_t tokens, Keep* keep, RouteParams* p, const float** bias,
                         const float** biasVl, const uint8_t** imageMask) {
  *bias = typedField<float>(o, "bias", napi_float32_array, p->experts, true, keep);
  *biasVl = typedField<float>(o, "biasVl", napi_float32_array, p->experts, true, keep);
  *imageMask = typedField<uint8_t>(o, "imageMask", napi_uint8_array, tokens, true, keep);
  p->hasBias = *bias != nullptr;
  if (*biasVl != nullptr && *bias == nullptr) throwJs(o.Env(), ErrorKind::TypeError, "biasVl needs bias");
}

// One routing call: the gate projection (when `gate` is given) then top-k selection.
struct RouteCall {
  RouteParams p{};
  int64_t tokens = 0;
  LinearHandle gate;  // set: logits = x . gate^T computed here (into `logits`)
  const float* x = nullptr;
  float* logits = nullptr;
  const float* bias = nullptr;
  const float* biasVl = nullptr;
  const uint8_t* imageMask = nullptr;
  int32_t* indices = nullptr;
  float* weights = nullptr;
  int threads = 0;
  // CUDA (cudaDevice >= 0): the gate weight [experts, dim] and x go to that device.
  int cudaDevice = -1;
  const float* gateWeight = nullptr;
  int dim = 0;
  Keep keep;
};

RouteCall readRoute(const Napi::CallbackInfo& info, bool keepAlive) {
  const Napi::Object o = argObject(info);
  RouteCall c;
  Keep* keep = keepAlive ? &c.keep : nullptr;
  RouteParams& p = c.p;
  c.tokens = intField(o, "tokens", 0, INT32_MAX);
  p = readRouteParams(o);
  if (!o.Get("gate").IsUndefined()) {
    c.gate = linearField(o, "gate");
    if (c.gate->n != p.experts) throwJs(o.Env(), ErrorKind::RangeError, "gate has " + std::to_string(c.gate->n) + " rows, not one per expert");
    c.x = typedField<float>(o, "x", napi_float32_array, c.tokens * c.gate->k, false, keep);
  }
  c.logits = typedField<float>(o, "logits", napi_float32_array, c.tokens * p.experts, false, keep,
                                c.gate || !o.Get("cudaDevice").IsUndefined() ? Access::Write : Access::Read);
  readSelectionInputs(o, c.tokens, keep, &p, &c.bias, &c.biasVl, &c.imageMask);
  c.indices = typedField<int32_t>(o, "indices", napi_int32_array, c.tokens * p.topk, false, keep, Access::Write);
  c.weights = typedField<float>(o, "weights", napi_float32_array, c.tokens * p.topk, false, keep, Access::Write);
  c.threads = static_cast<int>(intField(o, "threads", 0, 4096));
  if (!o.Get("cudaDevice").IsUndefined()) {
    c.cudaDevice = static_cast<int>(intField(o, "cudaDevice", 0, 1024));
    c.dim = static_cast<int>(intField(o, "dim", 1, 1 << 20));
    c.gateWeight = typedField<float>(o, "gateWeight", napi_float32_array, static_cast<int64_t>(p.experts) * c.dim, false, keep);
    c.x = typedField<float>(o, "x", napi_float32_array, c.tokens * c.dim, false, keep);
  }
  return c;
}

void runRoute(const RouteCall& c, AddonState& state) {
  if (c.cudaDevice >= 0) {
    MoeRouteCudaRequest r;
    r.tokens = c.tokens;
    r.dim = c.dim;
    r.route = c.p;
    r.x = c.x;
    r.gateWeight = c.gateWeight;
    r.bias = c.bias;
    r.biasVl = c.biasVl;
    r.imageMask = c.imageMask;
    r.indices = c.indices;
    r.weights = c.weights;
    r.logits = c.logits;
    r.device = c.cudaDevice;
    EK_CUDA(r.device, moeRouteCuda(r));
    return;
  }
  if (c.gate && c.tokens > 0) linearCpu(c.x, c.tokens, c.gate->k, *c.gate, c.logits, c.gate->n, state.pool, c.threads);
  moeRouteCpu(c.logits, c.tokens, c.bias, c.biasVl, c.imageMask, c.p, c.indices, c.weights, state.pool, c.threads);
}

struct LayoutCall {
  int64_t tokens = 0;
  int topk = 0, experts = 0, ranks = 0;
  const int32_t* indices = nullptr;
  const int32_t* expertToRank = nullptr;
  int32_t *counts = nullptr, *offsets = nullptr, *permutation = nullptr, *countsPerRank = nullptr;
  uint8_t* tokenInRank = nullptr;
  Keep keep;
};

LayoutCall readLayout(const Napi::CallbackInfo& info, bool keepAlive) {
  const Napi::Object o = argObject(info);
  LayoutCall c;
  Keep* keep = keepAlive ? &c.keep : nullptr;
  c.tokens = intField(o, "tokens", 0, INT32_MAX);
  c.topk = static_cast<int>(intField(o, "topk", 1, 1 << 20));
  c.experts = static_cast<int>(intField(o, "experts", 1, 1 << 20));
  c.ranks = static_cast<int>(intField(o, "ranks", 1, 1 << 16));
  c.indices = typedField<int32_t>(o, "indices", napi_int32_array, c.tokens * c.topk, false, keep);
  c.expertToRank = typedField<int32_t>(o, "expertToRank", napi_int32_array, c.experts, true, keep);
  c.counts = typedField<int32_t>(o, "counts", napi_int32_array, c.experts, false, keep, Access::Write);
  c.offsets = typedField<int32_t>(o, "offsets", napi_int32_array, c.experts, false, keep, Access::Write);
  c.permutation = typedField<int32_t>(o, "permutation", napi_int32_array, c.tokens * c.topk, false, keep, Access::Write);
  c.countsPerRank = typedField<int32_t>(o, "countsPerRank", napi_int32_array, c.ranks, c.expertToRank == nullptr, keep, Access::Write);
  c.tokenInRank = typedField<uint8_t>(o, "tokenInRank", napi_uint8_array, c.tokens * c.ranks, c.expertToRank == nullptr, keep, Access::Write);
  return c;
}

void runLayout(const LayoutCall& c) {
  moeLayoutCpu(c.indices, c.tokens, c.topk, c.experts, c.expertToRank, c.ranks, c.counts, c.offsets, c.permutation, c.countsPerRank, c.tokenInRank);
}

}  // namespace

Napi::Value MoeRoute(const Napi::CallbackInfo& info) {
  const RouteCall c = readRoute(info, false);
  AddonState& state = addonState(info.Env());
  runSync(info.Env(), [&] { runRoute(c, state); });
  return info.Env().Undefined();
}

Napi::Value MoeRouteAsync(const Napi::CallbackInfo& info) {
  auto c = std::make_shared<RouteCall>(readRoute(info, true));
  AddonState* state = &addonState(info.Env());
  Keep keep = std::move(c->keep);
  return runAsync(info.Env(), [c, state] { runRoute(*c, *state); }, std::move(keep));
}

Napi::Value MoeLayout(const Napi::CallbackInfo& info) {
  const LayoutCall c = readLayout(info, false);
  runSync(info.Env(), [&] { runLayout(c); });
  return info.Env().Undefined();
}

Napi::Value MoeLayoutAsync(const Napi::CallbackInfo& info) {
  auto c = std::make_shared<LayoutCall>(readLayout(info, true));
  Keep keep = std::move(c->keep);
  return runAsync(info.Env(), [c] { runLayout(*c); }, std::move(keep));
}

namespace {

std::vector<ExpertWeights> expertList(const Napi::Object& o, const char* gateUpName, const char* downName) {
  std::vector<ExpertWeights> out;
  const Napi::Value gu = o.Get(gateUpName), dn = o.Get(downName);
  if (gu.IsUndefined()) return out;
  if (!gu.IsArray() || !dn.IsArray() || gu.As<Napi::Array>().Length() != dn.As<Napi::Array>().Length()) {
    throwJs(o.Env(), ErrorKind::TypeError, std::string(gateUpName) + " and " + downName + " must be arrays of equal length");
  }
  const Napi::Array a = gu.As<Napi::Array>(), b = dn.As<Napi::Array>();
  for (uint32_t i = 0; i < a.Length(); ++i) {
    Napi::Object holder = Napi::Object::New(o.Env());
    holder.Set("gateUp", a.Get(i));
    holder.Set("down", b.Get(i));
    out.push_back({linearField(holder, "gateUp"), linearField(holder, "down")});
  }
  return out;
}

}  // namespace

namespace {

struct ExpertsCall {
  MoeExpertsRequest req;
  int threads = 0;
  Keep keep;
};

std::shared_ptr<ExpertsCall> readExperts(const Napi::CallbackInfo& info, bool keepAlive) {
  const Napi::Object o = argObject(info);
  auto call = std::make_shared<ExpertsCall>();
  Keep* keep = keepAlive ? &call->keep : nullptr;
  MoeExpertsRequest& r = call->req;
  r.tokens = intField(o, "tokens", 0, INT32_MAX);
  r.dim = static_cast<int>(intField(o, "dim", 1, 1 << 20));
  r.topk = static_cast<int>(intField(o, "topk", 1, 1 << 20));
  r.x = typedField<float>(o, "x", napi_float32_array, r.tokens * r.dim, false, keep);
  r.indices = typedField<int32_t>(o, "indices", napi_int32_array, r.tokens * r.topk, false, keep);
  r.weights = typedField<float>(o, "weights", napi_float32_array, r.tokens * r.topk, false, keep);
  r.experts = expertList(o, "gateUp", "down");  // handles hold their weights alive
  r.shared = expertList(o, "sharedGateUp", "sharedDown");
  r.swigluLimit = static_cast<float>(floatField(o, "swigluLimit", 0, std::numeric_limits<float>::max()));
  r.out = typedField<float>(o, "out", napi_float32_array, r.tokens * r.dim, false, keep, Access::Write);
  r.stageSeconds = typedField<double>(o, "stageSeconds", napi_float64_array, 3, true, keep, Access::Write);
  call->threads = static_cast<int>(intField(o, "threads", 0, 4096));
  return call;
}

}  // namespace

Napi::Value MoeExperts(const Napi::CallbackInfo& info) {
  auto call = readExperts(info, false);
  AddonState* state = &addonState(info.Env());
  runSync(info.Env(), [call, state] { moeExpertsCpu(call->req, state->pool, call->threads); });
  return info.Env().Undefined();
}

Napi::Value MoeExpertsAsync(const Napi::CallbackInfo& info) {
  auto call = readExperts(info, true);
  AddonState* state = &addonState(info.Env());
  Keep keep = std::move(call->keep);
  return runAsync(info.Env(), [call, state] { moeExpertsCpu(call->req, state->pool, call->threads); }, std::move(keep));
}

namespace {

using MoeDeviceHandle = std::shared_ptr<DeviceMoeWeights>;

// {format, n, k, count, codes, scales}: `count` matrices in their stored codes.
ExpertMatrices expertMatricesField(const Napi::Object& parent, const char* name, bool optional) {
  ExpertMatrices m;
  const Napi::Value v = parent.Get(name);
  if (v.IsUndefined() && optional) return m;
  if (!v.IsObject()) throwJs(parent.Env(), ErrorKind::TypeError, std::string(name) + " must be an object of expert weights");
  const Napi::Object o = v.As<Napi::Object>();
  m.format = weightFormatField(o, "format", "f32", true);
  m.n = intField(o, "n", 1, INT32_MAX);
  m.k = intField(o, "k", 1, INT32_MAX);
  m.count = intField(o, "count", 0, 1 << 20);
  m.codes = typedField<uint8_t>(o, "codes", napi_uint8_array, m.count * m.n * weightRowBytes(m.format, m.k), false);
  const int64_t scaleBytes = weightFormatScaled(m.format) ? m.count * m.n * ((m.k + kScaleBlock - 1) / kScaleBlock) : 0;
  m.rowScales = typedField<uint8_t>(o, "scales", napi_uint8_array, scaleBytes, scaleBytes == 0);
  return m;
}

struct MoeCudaCall {
  MoeCudaRequest req;
  MoeDeviceHandle weights;
  Keep keep;
};

std::shared_ptr<MoeCudaCall> readMoeCuda(const Napi::CallbackInfo& info, bool keepAlive) {
  const Napi::Object o = argObject(info);
  auto call = std::make_shared<MoeCudaCall>();
  Keep* keep = keepAlive ? &call->keep : nullptr;
  MoeCudaRequest& r = call->req;
  const Napi::Value handle = o.Get("deviceWeights");
  call->weights = requireHandle<MoeDeviceHandle>(o.Env(), handle, HandleKind::MoeDeviceWeights, "deviceWeights",
                                                 "a handle from moeUploadCuda");
  r.tokens = intField(o, "tokens", 0, INT32_MAX);
  r.route = readRouteParams(o);
  const int64_t dim = intField(o, "dim", 1, 1 << 20);
  r.dim = dim;
  r.x = typedField<float>(o, "x", napi_float32_array, r.tokens * dim, false, keep);
  readSelectionInputs(o, r.tokens, keep, &r.route, &r.bias, &r.biasVl, &r.imageMask);
  r.swigluLimit = static_cast<float>(floatField(o, "swigluLimit", 0, std::numeric_limits<float>::max()));
  r.out = typedField<float>(o, "out", napi_float32_array, r.tokens * dim, false, keep, Access::Write);
  r.indices = typedField<int32_t>(o, "indices", napi_int32_array, r.tokens * r.route.topk, false, keep, Access::Write);
  r.weights = typedField<float>(o, "weights", napi_float32_array, r.tokens * r.route.topk, false, keep, Access::Write);
  r.logits = typedField<float>(o, "logits", napi_float32_array, r.tokens * r.route.experts, true, keep, Access::Write);
  return call;
}

}  // namespace

Napi::Value MoeUploadCuda(const Napi::CallbackInfo& info) {
  const Napi::Object o = argObject(info);
  MoeDeviceUpload u;
  u.experts = static_cast<int>(intField(o, "experts", 1, 1 << 20));
  u.dim = static_cast<int>(intField(o, "dim", 1, 1 << 20));
  u.gateWeight = typedField<float>(o, "gateWeight", napi_float32_array, static_cast<int64_t>(u.experts) * u.dim, false);
  u.gateUp = expertMatricesField(o, "gateUp", false);
  u.down = expertMatricesField(o, "down", false);
  u.sharedGateUp = expertMatricesField(o, "sharedGateUp", true);
  u.sharedDown = expertMatricesField(o, "sharedDown", true);
  const int device = static_cast<int>(intField(o, "deviceIndex", 0, 1024));
  MoeDeviceHandle handle;
  runSync(info.Env(), [&] { EK_CUDA(device, handle = uploadMoeWeightsCuda(u, device)); });
  auto* holder = new MoeDeviceHandle(std::move(handle));
  return makeHandle(info.Env(), HandleKind::MoeDeviceWeights, holder);
}

Napi::Value MoeForwardCuda(const Napi::CallbackInfo& info) {
  auto call = readMoeCuda(info, false);
  runSync(info.Env(), [call] { EK_CUDA(0, moeForwardCuda(call->req, *call->weights)); });
  return info.Env().Undefined();
}

Napi::Value MoeForwardCudaAsync(const Napi::CallbackInfo& info) {
  auto call = readMoeCuda(info, true);
  Keep keep = std::move(call->keep);
  return runAsync(info.Env(), [call] { EK_CUDA(0, moeForwardCuda(call->req, *call->weights)); }, std::move(keep));
}

EK_EXPORT_FUNCTIONS(
    {"moeUploadCuda", MoeUploadCuda},
    {"moeForwardCuda", MoeForwardCuda},
    {"moeForwardCudaAsync", MoeForwardCudaAsync},
    {"moeRoute", MoeRoute},
    {"moeLayout", MoeLayout},
    {"moeRouteAsync", MoeRouteAsync},
    {"moeLayoutAsync", MoeLayoutAsync},
    {"moeExperts", MoeExperts},
    {"moeExpertsAsync", MoeExpertsAsync});

}  // namespace engram
