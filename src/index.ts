export { CompressedTokenizer, type FromFileOptions } from './hashing/compressed-tokenizer.js';
export { compressionKey } from './hashing/compression-key.js';
export {
  NgramHashMapping,
  type HashOptions,
  type HashRowsOptions,
  type HashRowsResult,
  type HashSpecJson,
  type LayerHashSpec,
} from './hashing/ngram-hash-mapping.js';
export {
  DEFAULT_NGRAM_HASH_CONFIG,
  DEEPSEEK_V41_NGRAM_HASH_CONFIG,
  MAX_NGRAM_LIMIT,
  type NgramHashConfig,
  type ResolvedNgramHashConfig,
} from './hashing/ngram-hash-config.js';
export { devices, buildInfo, type DeviceInfo, type BuildInfo } from './core/devices.js';
export type { NativeDeviceInfo } from './native/device.js';
export type { Geometry as EngramGeometry } from './layers/paper/weights.js';
export type { TableTier, TableTierOptions, LoadedFile } from './table/tiers.js';
export { defaultRng, SeedSequence, Pcg64 } from './hashing/numpy-random.js';
export { isPrime, findNextPrime } from './hashing/primes.js';
export type { Device, IdArray } from './core/validate.js';
export { Engram, type EngramForwardOptions, type EngramForwardResult, type EngramOptions, type EngramRowsForwardOptions, type EngramState } from './layers/paper/layer.js';
export {
  CONV_NORM_EPS,
  DEFAULT_ENGRAM_DIMS,
  GATE_NORM_EPS,
  type EngramConfig,
  type EngramDims,
  type ResolvedEngramConfig,
} from './layers/paper/config.js';
export { EngramTable, MAX_TABLE_PARTS, SCALE_BLOCK, TABLE_DTYPES, type TableDtype, type TablePart } from './table/table.js';
export type { Tensor, TensorDtype, TensorPart, ByteRegion } from './core/tensor.js';
export { readSafetensors, writeSafetensors, parseSafetensors, type SafetensorsFile, type TensorHole } from './core/safetensors.js';
export { EngramModel, defaultLayerPrefix, type EngramModelPrefetch, type EngramModelState, type EngramRows } from './layers/paper/model.js';
export { Prefetch, type HashedRows } from './table/prefetch.js';
export {
  DeepseekV41Engram,
  DEEPSEEK_V41_ENGRAM_CONFIG,
  type DeepseekV41EngramConfig,
  type V41ForwardOptions,
  type V41ForwardResult,
} from './layers/v41/layer.js';
export { DeepseekV41EngramModel, type V41ModelForwardOptions, type V41ModelPrefetch } from './layers/v41/model.js';
export { parseV41Config, findEngramTensors, assembleV41Tensors, writeSyntheticV41Checkpoint, type V41CheckpointConfig, type V41CheckpointLayout, type SynthOptions } from './layers/v41/checkpoint.js';
export { MoE, moeRoute, moeRouteAsync, moeLayout, moeLayoutAsync, MOE_ROUTE_PRESETS, type MoeConfig, type MoeForwardOptions, type MoeRoute, type MoeLayout, type MoeRouteOptions, type ScoreFunc } from './moe/moe.js';
export {
  TablePager,
  PagerTicket,
  hottestRows,
  DEFAULT_PAGE_BYTES,
  type Eviction,
  type PagerOptions,
  type PagerStats,
  type TableFile,
} from './table/pager.js';
export { MappedFile } from './core/mapped-file.js';
export { allocateFloat32, allocateInt32 } from './core/output.js';
export {
  quantizeWeight,
  dequantizeWeight,
  weightFromTensors,
  weightBytes,
  WEIGHT_SCALE_BLOCK,
  type WeightFormat,
  type QuantizedWeight,
  type LinearWeight,
} from './moe/quantized-weights.js';
export { planOffload, formatPlan, OFFLOAD_PRESETS, OFFLOAD_DEFAULTS, type OffloadPlan, type OffloadPlanInput, type OffloadModePlan } from './table/plan.js';
export { RemoteStore, type RemoteStoreOptions } from './table/remote/store.js';
export { pushTable, defaultPageRows, type PushOptions, type PushResult } from './table/remote/push.js';
export { pushCheckpoint } from './table/remote/push-checkpoint.js';
export { stripCheckpoint, type StripResult } from './table/remote/strip.js';
export { STRIPPED_RECORD, type StrippedRecord } from './table/remote/stripped.js';
export { tableIdentity, tableId, type TableIdentity, type RemoteManifest, type PageKeyFormat } from './table/remote/identity.js';
export { RemoteTable, type RemoteStats } from './table/remote/remote-source.js';
