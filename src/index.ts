export { CompressedTokenizer, type FromFileOptions } from './compressed-tokenizer.js';
export { compressionKey } from './compression-key.js';
export {
  NgramHashMapping,
  type HashOptions,
  type HashRowsOptions,
  type HashRowsResult,
  type HashSpecJson,
  type LayerHashSpec,
} from './ngram-hash-mapping.js';
export {
  DEFAULT_NGRAM_HASH_CONFIG,
  DEEPSEEK_V41_NGRAM_HASH_CONFIG,
  MAX_NGRAM_LIMIT,
  type NgramHashConfig,
  type ResolvedNgramHashConfig,
} from './ngram-hash-config.js';
export { devices, buildInfo, type DeviceInfo, type BuildInfo } from './devices.js';
export { defaultRng, SeedSequence, Pcg64 } from './numpy-random.js';
export { isPrime, findNextPrime } from './primes.js';
export type { Device, IdArray } from './validate.js';
export { Engram, type EngramForwardOptions, type EngramForwardResult, type EngramOptions, type EngramState } from './engram.js';
export {
  CONV_NORM_EPS,
  DEFAULT_ENGRAM_DIMS,
  GATE_NORM_EPS,
  type EngramConfig,
  type EngramDims,
  type ResolvedEngramConfig,
} from './engram-config.js';
export { EngramTable, MAX_TABLE_PARTS, SCALE_BLOCK, TABLE_DTYPES, type TableDtype, type TablePart } from './table.js';
export type { Tensor, TensorDtype, TensorPart } from './dtype.js';
export { readSafetensors, writeSafetensors, parseSafetensors, type SafetensorsFile } from './safetensors.js';
export { EngramModel, defaultLayerPrefix, type EngramModelState, type EngramRows } from './engram-model.js';
export {
  DeepseekV41Engram,
  DEEPSEEK_V41_ENGRAM_CONFIG,
  type DeepseekV41EngramConfig,
  type V41ForwardOptions,
  type V41ForwardResult,
} from './deepseek-v41-engram.js';
export { DeepseekV41EngramModel, type V41ModelForwardOptions } from './deepseek-v41-model.js';
export { parseV41Config, findEngramTensors, assembleV41Tensors, writeSyntheticV41Checkpoint, type V41CheckpointConfig, type SynthOptions } from './deepseek-v41-checkpoint.js';
export { MoE, moeRoute, moeRouteAsync, moeLayout, moeLayoutAsync, MOE_ROUTE_PRESETS, type MoeConfig, type MoeRoute, type MoeLayout, type MoeRouteOptions, type ScoreFunc } from './moe.js';
export {
  TablePager,
  PagerTicket,
  hottestRows,
  DEFAULT_PAGE_BYTES,
  type Eviction,
  type PagerOptions,
  type PagerStats,
  type TableFile,
} from './pager.js';
export { MappedFile } from './mapped-file.js';
export {
  quantizeWeight,
  dequantizeWeight,
  weightFromTensors,
  weightBytes,
  WEIGHT_SCALE_BLOCK,
  type WeightFormat,
  type QuantizedWeight,
  type LinearWeight,
} from './quantized-weights.js';
export { planOffload, formatPlan, OFFLOAD_PRESETS, OFFLOAD_DEFAULTS, type OffloadPlan, type OffloadPlanInput, type OffloadModePlan } from './plan.js';
