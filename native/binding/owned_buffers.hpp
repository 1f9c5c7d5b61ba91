// ArrayBuffers whose memory the addon owns (pool outputs, file mappings, views of mapped
// files, long-lived arrays made with allocateOwned). JS can transfer such a buffer to
// another thread or structuredClone it away, and the receiver's GC then runs our
// finalizer; N-API cannot stop either. So the memory is held by a shared owner: the
// finalizer only drops the registry's share, and an async call in flight holds its own
// (ownedBufferPin), so the memory outlives the call whatever JS does meanwhile.
#pragma once
#include <napi.h>

#include <cstddef>
#include <cstdint>
#include <memory>

namespace engram {

using OwnedMemory = std::shared_ptr<const void>;

// An external ArrayBuffer over [data, data + bytes), registered for pinning: `owner`
// frees the memory when its last share goes (the finalizer's, then any call's). V8
// counts `bytes` as external memory while the ArrayBuffer lives.
Napi::ArrayBuffer newOwnedArrayBuffer(const Napi::Env& env, void* data, size_t bytes, OwnedMemory owner);

// A share of the memory behind the ArrayBuffer whose data starts at `data` and spans
// `bytes`, when the addon made it; nullptr for memory JS owns.
OwnedMemory ownedBufferPin(const void* data, size_t bytes);

}  // namespace engram
