// The MoE fixtures of shared/reference and the block they describe.
import { MoE, type ScoreFunc, type Tensor } from '../../src/index.js';

export interface MoeFixture {
  config: {
    tokens: number; dim: number; experts: number; n_groups?: number; topk_groups?: number; topk: number; route_scale?: number;
    routed_scaling_factor?: number; score_func: ScoreFunc; gate_temp?: number; ffn_dim: number; shared_ffn_dim?: number; swiglu_limit?: number;
  };
  x: number[];
  gate_w: number[];
  bias: number[] | null;
  w1: number[];
  w3: number[];
  w2: number[];
  shared_w1?: number[];
  shared_w3?: number[];
  shared_w2?: number[];
  topk_idx: number[][];
  output: number[];
}

export const f32 = (shape: number[], values: number[]): Tensor => ({ dtype: 'F32', shape, data: Float32Array.from(values) });

/** The block the fixture configures, without weights (on the CPU unless told: the GPU suite compares with it). */
export function emptyBlock(f: MoeFixture, normEps: number, device: 'cpu' | 'cuda' = 'cpu'): MoE {
  const c = f.config;
  return new MoE({
    dim: c.dim, numExperts: c.experts, ffnDim: c.ffn_dim, topk: c.topk, nGroups: c.n_groups ?? 1, topkGroups: c.topk_groups ?? 1,
    routeScale: c.route_scale ?? c.routed_scaling_factor ?? 1, scoreFunc: c.score_func, gateTemp: c.gate_temp, normEps,
    swigluLimit: c.swiglu_limit, nSharedExperts: f.shared_w1 !== undefined ? 1 : 0, sharedFfnDim: c.shared_ffn_dim,
  }, { device });
}

/** The fixture's weights as an F32 state dict with the reference's names. */
export function stateDictOf(f: MoeFixture): Record<string, Tensor> {
  const c = f.config;
  const F = c.ffn_dim;
  const D = c.dim;
  const dict: Record<string, Tensor> = { 'gate.weight': f32([c.experts, D], f.gate_w) };
  if (f.bias) dict['gate.bias'] = f32([c.experts], f.bias);
  for (let e = 0; e < c.experts; e++) {
    dict[`experts.${e}.w1.weight`] = f32([F, D], f.w1.slice(e * F * D, (e + 1) * F * D));
    dict[`experts.${e}.w3.weight`] = f32([F, D], f.w3.slice(e * F * D, (e + 1) * F * D));
    dict[`experts.${e}.w2.weight`] = f32([D, F], f.w2.slice(e * F * D, (e + 1) * F * D));
  }
  if (f.shared_w1 !== undefined) {
    const SF = c.shared_ffn_dim!;
    dict['shared_experts.w1.weight'] = f32([SF, D], f.shared_w1);
    dict['shared_experts.w3.weight'] = f32([SF, D], f.shared_w3!);
    dict['shared_experts.w2.weight'] = f32([D, SF], f.shared_w2!);
  }
  return dict;
}

export function block(f: MoeFixture, normEps: number): MoE {
  const moe = emptyBlock(f, normEps);
  moe.loadStateDict(stateDictOf(f));
  return moe;
}
