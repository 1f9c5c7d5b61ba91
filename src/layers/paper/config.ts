// Configuration of the paper's Engram layer (engram_demo_v1.py: EngramConfig plus the
// backbone's hidden_size and hc_mult), with the reference's defaults.
import { DEFAULT_NGRAM_HASH_CONFIG, resolveConfig, type NgramHashConfig, type ResolvedNgramHashConfig } from '../../hashing/ngram-hash-config.js';
import { describe, requireInteger } from '../../core/validate.js';

export interface EngramDims {
  hiddenSize: number;
  hcMult: number;
  kernelSize: number;
  /** Channels per n-gram order, split over its heads (table row width = this / nHeadPerNgram). */
  nEmbedPerNgram: number;
}

export interface EngramConfig extends NgramHashConfig, EngramDims {
  /** Which of layerIds this layer is (default: the first). */
  layerId: number;
}

export interface ResolvedEngramConfig extends ResolvedNgramHashConfig, EngramDims {
  layerId: number;
}

export const DEFAULT_ENGRAM_DIMS: Readonly<EngramDims> = Object.freeze({
  hiddenSize: 1024,
  hcMult: 4,
  kernelSize: 4,
  nEmbedPerNgram: 512,
});

/** RMSNorm eps of norm1/norm2: torch's default for fp32 (float32 machine epsilon). */
export const GATE_NORM_EPS = 1.1920928955078125e-7;
/** ShortConv's RMSNorm eps. */
export const CONV_NORM_EPS = 1e-5;

export function resolveDims(config: Partial<EngramDims>): EngramDims {
  const d = { ...DEFAULT_ENGRAM_DIMS, ...definedOnly(config) };
  return {
    hiddenSize: requireInteger('config.hiddenSize', d.hiddenSize, 1, 1 << 20),
    hcMult: requireInteger('config.hcMult', d.hcMult, 1, 1024),
    kernelSize: requireInteger('config.kernelSize', d.kernelSize, 1, 1024),
    nEmbedPerNgram: requireInteger('config.nEmbedPerNgram', d.nEmbedPerNgram, 1, 1 << 20),
  };
}

function definedOnly<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

export function resolveEngramConfig(config: Partial<EngramConfig> | undefined): ResolvedEngramConfig {
  if (config !== undefined && (config === null || typeof config !== 'object')) {
    throw new TypeError(`config must be an object, got ${describe(config)}`);
  }
  const c = config ?? {};
  const hash = resolveConfig(c);
  const dims = resolveDims(c);
  const layerId = c.layerId ?? hash.layerIds[0];
  if (!hash.layerIds.includes(layerId)) {
    throw new RangeError(`config.layerId = ${describe(layerId)} is not one of config.layerIds [${hash.layerIds}]`);
  }
  if (dims.nEmbedPerNgram % hash.nHeadPerNgram !== 0) {
    throw new RangeError(`config.nEmbedPerNgram (${dims.nEmbedPerNgram}) must be a multiple of nHeadPerNgram (${hash.nHeadPerNgram})`);
  }
  return { ...hash, ...dims, layerId };
}

export { DEFAULT_NGRAM_HASH_CONFIG };
