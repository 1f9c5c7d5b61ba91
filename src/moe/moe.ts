// Mixture-of-Experts routing (DeepSeek-V3's Gate, plain softmax top-k, DeepSeek-V4.1's
// sqrt-softplus gate) and the dispatch layout (DeepEP's get_dispatch_layout): the
// selection runs natively per token on the element body in native/moe/moe.cuh.
import type { Tensor } from '../core/tensor.js';
import { toFloat32 } from '../core/tensor.js';
import { requireTensor } from '../layers/paper/weights.js';
import { resolveDevice } from '../core/devices.js';
import { native, type NativeLinearHandle, type NativeMoeCudaArgs, type NativeMoeDeviceHandle } from '../native/index.js';
import { concatWeights, packWeight, stackWeightRows, weightBytes, weightFromTensors, type LinearWeight } from './quantized-weights.js';
import { describe, isOwnKey, requireDevice, requireFinite, requireInteger, requireShape, type Device, refuseOverlap, requireFiniteValues } from '../core/validate.js';
import { newFloat32 } from '../core/output.js';

export type ScoreFunc = 'softmax' | 'sigmoid' | 'sqrtsoftplus';
const SCORE_CODES: Record<ScoreFunc, number> = { softmax: 0, sigmoid: 1, sqrtsoftplus: 2 };

function requireScoreFunc(name: string, value: unknown): ScoreFunc {
  if (!isOwnKey(SCORE_CODES, value)) throw new RangeError(`${name} must be 'softmax', 'sigmoid' or 'sqrtsoftplus', got ${describe(value)}`);
  return value;
}

export interface MoeRouteOptions {
  topk: number;
  /** selection-only per-expert bias (DeepSeek's e_score_correction_bias) */
  bias?: Float32Array;
  /** V4.1: a second selection bias used where imageMask is set */
  biasVl?: Float32Array;
  imageMask?: Uint8Array;
  nGroups?: number;
  topkGroups?: number;
  scoreFunc?: ScoreFunc;
  /** sqrtsoftplus: scores = sqrt(softplus(logits / gateTemp)) */
  gateTemp?: number;
  routeScale?: number;
  /** added to the sum when renormalising (sigmoid, sqrtsoftplus); V4.1: 1e-20 */
  normEps?: number;
  threads?: number;
  /** 'auto' (default): CUDA where a device is visible. On CUDA the gate GEMM and the selection run on the device. */
  device?: Device;
  deviceIndex?: number;
}

/** Routing presets: DeepSeek-V3, plain softmax top-k (choose k), DeepSeek-V4.1. */
export const MOE_ROUTE_PRESETS = Object.freeze({
  deepseekV3: Object.freeze({ numExperts: 256, nGroups: 8, topkGroups: 4, topk: 8, routeScale: 2.5, scoreFunc: 'sigmoid' as ScoreFunc, normEps: 0 }),
  softmax: Object.freeze({ nGroups: 1, topkGroups: 1, routeScale: 1, scoreFunc: 'softmax' as ScoreFunc, normEps: 0 }),
  deepseekV41: Object.freeze({ numExperts: 384, nGroups: 1, topkGroups: 1, topk: 6, routeScale: 1.5, scoreFunc: 'sqrtsoftplus' as ScoreFunc, gateTemp: 1, normEps: 1e-20 }),
});

export interface MoeRoute {
  /** [N, topk] experts, in ranking order */
  indices: Int32Array;
  /** [N, topk] routing weights */
  weights: Float32Array;
  /** [N, experts] gate logits x . W^T */
  logits: Float32Array;
}

function requireFloats(name: string, value: unknown, length: number): Float32Array {
  if (!(value instanceof Float32Array)) throw new TypeError(`${name} must be a Float32Array, got ${describe(value)}`);
  if (value.length !== length) throw new RangeError(`${name} has ${value.length} elements but ${length} are needed`);
  return value;
}

/** Routes tokens x [N, dim] with the gate weight [experts, dim]. */
function prepareRoute(x: Float32Array, gateWeight: Float32Array, shape: [number, number], options: MoeRouteOptions, packedGate?: NativeLinearHandle) {
  if (options === null || typeof options !== 'object') throw new TypeError(`options must be an object, got ${describe(options)}`);
  const [tokens, dim] = requireShape('shape', shape);
  if (dim < 1) throw new RangeError(`shape[1] (dim) must be >= 1, got ${dim}`);
  requireFloats('x', x, tokens * dim);
  if (!(gateWeight instanceof Float32Array)) throw new TypeError(`gateWeight must be a Float32Array [experts, dim], got ${describe(gateWeight)}`);
  if (gateWeight.length === 0 || gateWeight.length % dim !== 0) throw new RangeError(`gateWeight has ${gateWeight.length} elements, not a multiple of dim ${dim}`);
  const experts = gateWeight.length / dim;
  const topk = requireInteger('options.topk', options.topk, 1, experts);
  const groups = requireInteger('options.nGroups', options.nGroups ?? 1, 1, 64);
  const topkGroups = requireInteger('options.topkGroups', options.topkGroups ?? groups, 1, groups);
  if (experts % groups !== 0) throw new RangeError(`${experts} experts do not split into options.nGroups = ${groups} groups`);
  if (topk > topkGroups * (experts / groups)) throw new RangeError(`options.topk = ${topk} exceeds the ${topkGroups * (experts / groups)} experts of the kept groups`);
  const scoreFunc = options.scoreFunc ?? 'softmax';
  requireScoreFunc('options.scoreFunc', scoreFunc);
  const device = resolveDevice(requireDevice('options.device', options.device), options.deviceIndex ?? 0);
  const bias = options.bias === undefined ? undefined : requireFloats('options.bias', options.bias, experts);
  const biasVl = options.biasVl === undefined ? undefined : requireFloats('options.biasVl', options.biasVl, experts);
  if (biasVl !== undefined && bias === undefined) throw new TypeError('options.biasVl needs options.bias');
  let imageMask: Uint8Array | undefined;
  if (options.imageMask !== undefined) {
    if (!(options.imageMask instanceof Uint8Array) || options.imageMask.length !== tokens) throw new RangeError(`options.imageMask must be a Uint8Array of ${tokens} elements, got ${describe(options.imageMask)}`);
    imageMask = options.imageMask;
  }
  const threads = options.threads === undefined ? 0 : requireInteger('options.threads', options.threads, 1, 4096);
  const logits = new Float32Array(tokens * experts);
  const indices = new Int32Array(tokens * topk);
  const weights = new Float32Array(tokens * topk);
  // The gate projection runs natively with the selection (both off the event loop in the
  // async twin); on CUDA both run on the device.
  const onDevice = device === 'cuda' ? { cudaDevice: options.deviceIndex ?? 0, gateWeight, dim, x } : undefined;
  const gate = onDevice ? undefined : packedGate ?? native().packLinear({ weight: gateWeight, n: experts, k: dim });
  const args = {
    ...onDevice,
    gate, x, logits, tokens, experts, topk, groups, topkGroups,
    scoreFunc: SCORE_CODES[scoreFunc],
    gateTemp: requireFinite('options.gateTemp', options.gateTemp ?? 1, 0, Number.MAX_VALUE, true),
    routeScale: requireFinite('options.routeScale', options.routeScale ?? 1, 0, Number.MAX_VALUE, true),
    normEps: requireFinite('options.normEps', options.normEps ?? 0, 0),
    bias, biasVl, imageMask, indices, weights, threads,
  };
  return { args, result: { indices, weights, logits } as MoeRoute };
}

export function moeRoute(x: Float32Array, gateWeight: Float32Array, shape: [number, number], options: MoeRouteOptions): MoeRoute {
  return routeSync(x, gateWeight, shape, options);
}

/** moeRoute with the gate already packed (the MoE block packs it once, at load). */
function routeSync(x: Float32Array, gateWeight: Float32Array, shape: [number, number], options: MoeRouteOptions, packedGate?: NativeLinearHandle): MoeRoute {
  const { args, result } = prepareRoute(x, gateWeight, shape, options, packedGate);
  native().moeRoute(args);
  return result;
}

/** moeRoute() with the gate projection and the selection on a worker thread. */
export async function moeRouteAsync(x: Float32Array, gateWeight: Float32Array, shape: [number, number], options: MoeRouteOptions): Promise<MoeRoute> {
  return routeAsync(x, gateWeight, shape, options);
}

async function routeAsync(x: Float32Array, gateWeight: Float32Array, shape: [number, number], options: MoeRouteOptions, packedGate?: NativeLinearHandle): Promise<MoeRoute> {
  const { args, result } = prepareRoute(x, gateWeight, shape, options, packedGate);
  await native().moeRouteAsync(args);
  return result;
}

export interface MoeLayout {
  /** tokens routed to each expert */
  countsPerExpert: Int32Array;
  /** where each expert's rows start in the expert-sorted buffer */
  offsets: Int32Array;
  /** (token * topk + slot) pairs sorted by expert, then token (stable) */
  permutation: Int32Array;
  /** with expertToRank: tokens each rank receives (a token once per rank) */
  countsPerRank?: Int32Array;
  /** with expertToRank: [N, ranks], 1 where the token goes to the rank */
  tokenInRank?: Uint8Array;
}

function prepareLayout(indices: Int32Array, numExperts: number, options: { topk: number; expertToRank?: Int32Array }) {
  if (!(indices instanceof Int32Array)) throw new TypeError(`indices must be an Int32Array [N, topk], got ${describe(indices)}`);
  const experts = requireInteger('numExperts', numExperts, 1, 1 << 20);
  const topk = requireInteger('options.topk', options?.topk, 1, experts);
  if (indices.length % topk !== 0) throw new RangeError(`indices has ${indices.length} elements, not a multiple of topk ${topk}`);
  const tokens = indices.length / topk;
  let ranks = 1;
  if (options.expertToRank !== undefined) {
    if (!(options.expertToRank instanceof Int32Array) || options.expertToRank.length !== experts) {
      throw new RangeError(`options.expertToRank must be an Int32Array of ${experts} ranks, got ${describe(options.expertToRank)}`);
    }
    ranks = options.expertToRank.reduce((m, r) => Math.max(m, r), 0) + 1;
  }
  const out: MoeLayout = { countsPerExpert: new Int32Array(experts), offsets: new Int32Array(experts), permutation: new Int32Array(indices.length) };
  if (options.expertToRank) {
    out.countsPerRank = new Int32Array(ranks);
    out.tokenInRank = new Uint8Array(tokens * ranks);
  }
  const args = {
    indices, tokens, topk, experts, ranks,
    expertToRank: options.expertToRank,
    counts: out.countsPerExpert,
    offsets: out.offsets,
    permutation: out.permutation,
    countsPerRank: out.countsPerRank,
    tokenInRank: out.tokenInRank,
  };
  return { args, out };
}

/** The dispatch layout of routed indices [N, topk] over numExperts experts. */
export function moeLayout(indices: Int32Array, numExperts: number, options: { topk: number; expertToRank?: Int32Array }): MoeLayout {
  const { args, out } = prepareLayout(indices, numExperts, options);
  native().moeLayout(args);
  return out;
}

/** moeLayout() on a worker thread. */
export async function moeLayoutAsync(indices: Int32Array, numExperts: number, options: { topk: number; expertToRank?: Int32Array }): Promise<MoeLayout> {
  const { args, out } = prepareLayout(indices, numExperts, options);
  await native().moeLayoutAsync(args);
  return out;
}

export interface MoeConfig {
  dim: number;
  numExperts: number;
  ffnDim: number;
  topk: number;
  nGroups?: number;
  topkGroups?: number;
  routeScale?: number;
  scoreFunc?: ScoreFunc;
  gateTemp?: number;
  normEps?: number;
  /** V4.1: gate <= limit, -limit <= up <= limit (default: none) */
  swigluLimit?: number;
  nSharedExperts?: number;
  /** hidden size of the shared experts together (default ffnDim * nSharedExperts) */
  sharedFfnDim?: number;
}

export interface MoeForwardOptions {
  threads?: number;
  /** V4.1: tokens whose selection uses the vision bias */
  imageMask?: Uint8Array;
  /** Float64Array(3): dispatch, experts, combine seconds */
  stageSeconds?: Float64Array;
  /** output buffer [N, dim] to fill (reuse it across calls) */
  out?: Float32Array;
}

/** fp32 activations as given, or bf16 bits widened (exact). */
function activations(x: Float32Array | Uint16Array): Float32Array {
  if (x instanceof Float32Array) return x;
  if (!(x instanceof Uint16Array)) throw new TypeError(`x must be a Float32Array (fp32) or a Uint16Array (bf16 bits), got ${describe(x)}`);
  const wide = new Uint32Array(x.length);
  for (let i = 0; i < x.length; i++) wide[i] = x[i] << 16;
  return new Float32Array(wide.buffer);
}

interface PackedExpert {
  /** CPU: packed projections (CUDA keeps the weights on the device instead) */
  gateUp?: NativeLinearHandle;
  down?: NativeLinearHandle;
  bytes: number;
}

/**
 * A Mixture-of-Experts block: the gate, routed SwiGLU experts and optional shared experts,
 * with the DeepSeek-V3 reference's state_dict names (`gate.weight`, `gate.bias`,
 * `experts.{e}.w1/w3/w2.weight`, `shared_experts.w1/w3/w2.weight`).
 */
export class MoE {
  readonly config: Required<MoeConfig>;
  /** Where the block runs: 'cpu' or 'cuda' ('auto' picks CUDA when a device is visible). */
  readonly device: 'cpu' | 'cuda';
  readonly deviceIndex: number;
  private gate: { weight: Float32Array; bias?: Float32Array; packed: NativeLinearHandle } | undefined;
  private experts: PackedExpert[] = [];
  private shared: PackedExpert[] = [];
  private deviceWeights: NativeMoeDeviceHandle | undefined;

  constructor(config: MoeConfig, options: { device?: Device; deviceIndex?: number } = {}) {
    if (config === null || typeof config !== 'object') throw new TypeError(`config must be an object, got ${describe(config)}`);
    const numExperts = requireInteger('config.numExperts', config.numExperts, 1, 1 << 20);
    const nGroups = requireInteger('config.nGroups', config.nGroups ?? 1, 1, 64);
    const nShared = requireInteger('config.nSharedExperts', config.nSharedExperts ?? 0, 0, 64);
    const ffnDim = requireInteger('config.ffnDim', config.ffnDim, 1, 1 << 20);
    this.config = {
      dim: requireInteger('config.dim', config.dim, 1, 1 << 20),
      numExperts,
      ffnDim,
      topk: requireInteger('config.topk', config.topk, 1, numExperts),
      nGroups,
      topkGroups: requireInteger('config.topkGroups', config.topkGroups ?? nGroups, 1, nGroups),
      routeScale: requireFinite('config.routeScale', config.routeScale ?? 1, 0, Number.MAX_VALUE, true),
      scoreFunc: requireScoreFunc('config.scoreFunc', config.scoreFunc ?? 'softmax'),
      gateTemp: requireFinite('config.gateTemp', config.gateTemp ?? 1, 0, Number.MAX_VALUE, true),
      normEps: requireFinite('config.normEps', config.normEps ?? 0, 0),
      // 0: no limit (DeepSeek-V3); V4.1 clamps at 10
      swigluLimit: requireFinite('config.swigluLimit', config.swigluLimit ?? 0, 0),
      nSharedExperts: nShared,
      sharedFfnDim: requireInteger('config.sharedFfnDim', config.sharedFfnDim ?? ffnDim * nShared, 0, 1 << 24),
    };
    if (numExperts % nGroups !== 0) throw new RangeError(`config.numExperts (${numExperts}) must be divisible by config.nGroups (${nGroups})`);
    this.deviceIndex = options.deviceIndex === undefined ? 0 : requireInteger('options.deviceIndex', options.deviceIndex, 0, 1024);
    this.device = resolveDevice(requireDevice('options.device', options.device), this.deviceIndex);
  }

  /**
   * Weights by name; every tensor is checked before anything changes. Expert weights may
   * be F32/BF16/F16, fp8 (F8_E4M3 with `.scale` F8_E8M0 per 32x32 block, as V4.1's
   * shared expert) or MXFP4 (U8/I8 [out, in/2] e2m1 pairs with `.scale` F8_E8M0
   * [out, in/32], as V4.1's routed experts): quantised ones stay in their codes and are
   * decoded per panel slice inside the GEMM (no float copy of the weights).
   */
  loadStateDict(record: Record<string, Tensor>, options: { prefix?: string; strict?: boolean } = {}): void {
    if (record === null || typeof record !== 'object') throw new TypeError(`state dict must be an object of tensors, got ${describe(record)}`);
    const prefix = options.prefix ?? '';
    const { dim, numExperts: E, ffnDim: F, sharedFfnDim: SF, nSharedExperts } = this.config;
    // Strict by default, as PyTorch's load_state_dict: a tensor under the prefix that is no
    // part of this block (an expert index past numExperts, a typo) is an error.
    if (options.strict !== false) {
      const expert = (base: string) => ['w1', 'w2', 'w3'].flatMap((w) => [`${base}.${w}.weight`, `${base}.${w}.scale`]);
      const known = new Set(['gate.weight', 'gate.bias', ...Array.from({ length: E }, (_, e) => expert(`experts.${e}`)).flat(), ...(nSharedExperts > 0 ? expert('shared_experts') : [])]);
      for (const key of Object.keys(record)) {
        if (key.startsWith(prefix) && !known.has(key.slice(prefix.length))) {
          throw new RangeError(`state dict has an unexpected tensor '${key}' (not part of this block: ${E} experts${nSharedExperts > 0 ? ', shared experts' : ''}); pass { strict: false } to ignore it`);
        }
      }
    }
    const get = (name: string, shape: number[], optional = false): Float32Array | undefined => {
      const t = record[prefix + name];
      if (t === undefined) {
        if (optional) return undefined;
        throw new RangeError(`state dict is missing tensor '${prefix}${name}' (expected shape [${shape.join(', ')}])`);
      }
      const tensor = requireTensor(prefix + name, t);
      if (tensor.shape.length !== shape.length || tensor.shape.some((d, i) => d !== shape[i])) {
        throw new RangeError(`tensor '${prefix}${name}' has shape [${tensor.shape.join(', ')}] but the block expects [${shape.join(', ')}]`);
      }
      return requireFiniteValues(prefix + name, toFloat32(prefix + name, tensor));
    };
    const weight = (name: string, shape: [number, number]): LinearWeight => {
      const full = `${prefix}${name}.weight`;
      if (record[full] === undefined) throw new RangeError(`state dict is missing tensor '${full}' (expected shape [${shape.join(', ')}])`);
      return weightFromTensors(full, record[full], `${prefix}${name}.scale`, record[`${prefix}${name}.scale`], shape);
    };
    const gateWeight = get('gate.weight', [E, dim])!;
    const gateBias = get('gate.bias', [E], true);
    const expertWeights = (base: string, ffn: number) => ({
      w1: weight(`${base}.w1`, [ffn, dim]),
      w3: weight(`${base}.w3`, [ffn, dim]),
      w2: weight(`${base}.w2`, [dim, ffn]),
    });
    const raw = Array.from({ length: E }, (_, e) => expertWeights(`experts.${e}`, F));
    const sharedRaw = nSharedExperts > 0 ? [expertWeights('shared_experts', SF)] : [];
    const pack = (w: { w1: LinearWeight; w3: LinearWeight; w2: LinearWeight }, ffn: number, base: string): PackedExpert => {
      const gateUp = stackWeightRows([w.w1, w.w3], [`${prefix}${base}.w1.weight`, `${prefix}${base}.w3.weight`]);
      return { gateUp: packWeight(gateUp, 2 * ffn, dim), down: packWeight(w.w2, dim, ffn), bytes: weightBytes(gateUp) + weightBytes(w.w2) };
    };
    const stacked = raw.map((w, e) => ({ ...w, gateUp: stackWeightRows([w.w1, w.w3], [`${prefix}experts.${e}.w1.weight`, `${prefix}experts.${e}.w3.weight`]) }));
    const sharedStacked = sharedRaw.map((w) => ({ ...w, gateUp: stackWeightRows([w.w1, w.w3], [`${prefix}shared_experts.w1.weight`, `${prefix}shared_experts.w3.weight`]) }));
    let deviceWeights: NativeMoeDeviceHandle | undefined;
    let experts: PackedExpert[] = [];
    let shared: PackedExpert[] = [];
    if (this.device === 'cuda') {
      // Every kind of expert weight goes up as one array, in its stored codes.
      deviceWeights = native().moeUploadCuda({
        experts: E, dim, gateWeight, deviceIndex: this.deviceIndex,
        gateUp: concatWeights(stacked.map((w) => w.gateUp), 2 * F, dim, `${prefix}experts.{e}.w1/w3.weight of expert`),
        down: concatWeights(stacked.map((w) => w.w2), dim, F, `${prefix}experts.{e}.w2.weight of expert`),
        sharedGateUp: sharedStacked.length ? concatWeights(sharedStacked.map((w) => w.gateUp), 2 * SF, dim, 'shared expert') : undefined,
        sharedDown: sharedStacked.length ? concatWeights(sharedStacked.map((w) => w.w2), dim, SF, 'shared expert') : undefined,
      });
      const bytes = (w: { gateUp: LinearWeight; w2: LinearWeight }) => weightBytes(w.gateUp) + weightBytes(w.w2);
      experts = stacked.map((w) => ({ bytes: bytes(w) }));
      shared = sharedStacked.map((w) => ({ bytes: bytes(w) }));
    } else {
      experts = raw.map((w, e) => pack(w, F, `experts.${e}`));
      shared = sharedRaw.map((w) => pack(w, SF, 'shared_experts'));
    }
    this.gate = { weight: gateWeight, bias: gateBias, packed: native().packLinear({ weight: gateWeight, n: E, k: dim }) };
    this.experts = experts;
    this.shared = shared;
    this.deviceWeights = deviceWeights;
  }

  /** Bytes of the expert weights as held (codes and scales for quantised ones). */
  get expertBytes(): { routed: number; shared: number } {
    const sum = (list: PackedExpert[]) => list.reduce((s, e) => s + e.bytes, 0);
    return { routed: sum(this.experts), shared: sum(this.shared) };
  }

  /**
   * The block on x [N, dim]: routing, experts, combine, shared experts. x is fp32, or bf16
   * bits in a Uint16Array (widened exactly to fp32); the output is fp32.
   */
  forward(input: Float32Array | Uint16Array, shape: [number, number], options: MoeForwardOptions = {}): { output: Float32Array; route: MoeRoute } {
    const x = activations(input);
    const call = this.check(x, shape, options);
    if (this.deviceWeights) {
      const { args, output, route } = this.cudaArgs(x, call.tokens, options);
      native().moeForwardCuda(args);
      return { output, route };
    }
    const route = routeSync(x, this.gate!.weight, shape, call.routeOptions, this.gate!.packed);
    const { args, output } = this.expertsArgs(x, call.tokens, route, options);
    if (args) native().moeExperts(args);
    return { output, route };
  }

  /** forward() with the gate projection, the selection and the experts on worker threads. */
  async forwardAsync(input: Float32Array | Uint16Array, shape: [number, number], options: MoeForwardOptions = {}): Promise<{ output: Float32Array; route: MoeRoute }> {
    const x = activations(input);
    const call = this.check(x, shape, options);
    if (this.deviceWeights) {
      const { args, output, route } = this.cudaArgs(x, call.tokens, options);
      await native().moeForwardCudaAsync(args);
      return { output, route };
    }
    // One set of weights for the whole call: a loadStateDict while the routing runs must
    // not pair the old routing with the new experts.
    const experts = { routed: this.experts, shared: this.shared };
    const route = await routeAsync(x, this.gate!.weight, shape, call.routeOptions, this.gate!.packed);
    // JS ran while the routing did: an input or output transferred away meanwhile (its
    // buffer detached) is named, not met as a wrong length.
    for (const [name, a] of [['input', x], ['options.out', options.out]] as const) {
      if (a !== undefined && a.length === 0 && call.tokens > 0) throw new TypeError(`${name}'s buffer was detached (transferred) while forwardAsync ran`);
    }
    const { args, output } = this.expertsArgs(x, call.tokens, route, options, experts);
    if (args) await native().moeExpertsAsync(args);
    return { output, route };
  }

  private check(x: Float32Array, shape: [number, number], options: MoeForwardOptions) {
    if (this.gate === undefined) throw new Error('this MoE has no weights yet: call loadStateDict()');
    const [tokens, dim] = requireShape('shape', shape);
    if (dim !== this.config.dim) throw new RangeError(`shape[1] = ${dim} but the block's dim is ${this.config.dim}`);
    if (options.out !== undefined && !(options.out instanceof Float32Array && options.out.length === tokens * dim)) {
      throw new RangeError(`options.out must be a Float32Array of ${tokens * dim} elements, got ${describe(options.out)}`);
    }
    refuseOverlap('options.out', options.out, 'x', x);
    const c = this.config;
    const routeOptions: MoeRouteOptions = {
      topk: c.topk, bias: this.gate.bias, nGroups: c.nGroups, topkGroups: c.topkGroups, scoreFunc: c.scoreFunc,
      gateTemp: c.gateTemp, routeScale: c.routeScale, normEps: c.normEps, threads: options.threads, imageMask: options.imageMask,
      device: 'cpu', // the CPU block routes on the CPU (its CUDA twin routes inside moeForwardCuda)
    };
    return { tokens, routeOptions };
  }

  private cudaArgs(x: Float32Array, tokens: number, options: MoeForwardOptions) {
    const c = this.config;
    const output = options.out ?? newFloat32(tokens * c.dim);
    const route: MoeRoute = { indices: new Int32Array(tokens * c.topk), weights: new Float32Array(tokens * c.topk), logits: new Float32Array(tokens * c.numExperts) };
    let imageMask: Uint8Array | undefined;
    if (options.imageMask !== undefined) {
      if (!(options.imageMask instanceof Uint8Array) || options.imageMask.length !== tokens) throw new RangeError(`options.imageMask must be a Uint8Array of ${tokens} elements, got ${describe(options.imageMask)}`);
      imageMask = options.imageMask;
    }
    const args: NativeMoeCudaArgs = {
      deviceWeights: this.deviceWeights!, tokens, dim: c.dim, x, experts: c.numExperts, topk: c.topk, groups: c.nGroups,
      topkGroups: c.topkGroups, scoreFunc: SCORE_CODES[c.scoreFunc], gateTemp: c.gateTemp, routeScale: c.routeScale, normEps: c.normEps,
      bias: this.gate!.bias, imageMask, swigluLimit: c.swigluLimit, out: output, indices: route.indices, weights: route.weights, logits: route.logits,
    };
    return { args, output, route };
  }

  private expertsArgs(x: Float32Array, tokens: number, route: MoeRoute, options: MoeForwardOptions, experts = { routed: this.experts, shared: this.shared }) {
    const c = this.config;
    const dim = c.dim;
    // Reusing `out` across calls avoids fresh pages (and their faults) for every output.
    const output = options.out ?? newFloat32(tokens * dim);
    const args =
      tokens === 0
        ? undefined
        : {
            tokens, dim, topk: c.topk, x, indices: route.indices, weights: route.weights,
            gateUp: experts.routed.map((e) => e.gateUp!), down: experts.routed.map((e) => e.down!),
            sharedGateUp: experts.shared.map((e) => e.gateUp!), sharedDown: experts.shared.map((e) => e.down!),
            swigluLimit: c.swigluLimit, out: output, stageSeconds: options.stageSeconds,
            threads: options.threads === undefined ? 0 : requireInteger('options.threads', options.threads, 1, 4096),
          };
    return { args, output };
  }
}
