import { describe, expect, it } from 'vitest';

import { MoE, type ScoreFunc, type Tensor } from '../src/index.js';
import { fixture } from './helpers/fixtures.js';
import { maxRelError } from './helpers/forward-small.js';

interface MoeFixture {
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

const f32 = (shape: number[], values: number[]): Tensor => ({ dtype: 'F32', shape, data: Float32Array.from(values) });

function block(f: MoeFixture, normEps: number): MoE {
  const c = f.config;
  const shared = f.shared_w1 !== undefined;
  const moe = new MoE({
    dim: c.dim, numExperts: c.experts, ffnDim: c.ffn_dim, topk: c.topk, nGroups: c.n_groups ?? 1, topkGroups: c.topk_groups ?? 1,
    routeScale: c.route_scale ?? c.routed_scaling_factor ?? 1, scoreFunc: c.score_func, gateTemp: c.gate_temp, normEps,
    swigluLimit: c.swiglu_limit, nSharedExperts: shared ? 1 : 0, sharedFfnDim: c.shared_ffn_dim,
  });
  const F = c.ffn_dim;
  const D = c.dim;
  const dict: Record<string, Tensor> = { 'gate.weight': f32([c.experts, D], f.gate_w) };
  if (f.bias) dict['gate.bias'] = f32([c.experts], f.bias);
  for (let e = 0; e < c.experts; e++) {
    dict[`experts.${e}.w1.weight`] = f32([F, D], f.w1.slice(e * F * D, (e + 1) * F * D));
    dict[`experts.${e}.w3.weight`] = f32([F, D], f.w3.slice(e * F * D, (e + 1) * F * D));
    dict[`experts.${e}.w2.weight`] = f32([D, F], f.w2.slice(e * F * D, (e + 1) * F * D));
  }
  if (shared) {
    const SF = c.shared_ffn_dim!;
    dict['shared_experts.w1.weight'] = f32([SF, D], f.shared_w1!);
    dict['shared_experts.w3.weight'] = f32([SF, D], f.shared_w3!);
    dict['shared_experts.w2.weight'] = f32([D, SF], f.shared_w2!);
  }
  moe.loadStateDict(dict);
  return moe;
}

describe('MoE block equals the reference (routing, SwiGLU experts, combine, shared experts)', () => {
  for (const [file, normEps] of [['moe-sigmoid-grouped.json', 0], ['moe-softmax.json', 0], ['v41-moe.json', 1e-20]] as const) {
    it(file, async () => {
      const f = fixture<MoeFixture>(file);
      const moe = block(f, normEps);
      const { output, route } = moe.forward(Float32Array.from(f.x), [f.config.tokens, f.config.dim]);
      expect(Array.from(route.indices)).toEqual(f.topk_idx.flat());
      expect(maxRelError(output, f.output)).toBeLessThan(1e-4);
      const one = moe.forward(Float32Array.from(f.x), [f.config.tokens, f.config.dim], { threads: 1 }).output;
      expect(Buffer.compare(Buffer.from(one.buffer), Buffer.from(output.buffer))).toBe(0);
      const async = (await moe.forwardAsync(Float32Array.from(f.x), [f.config.tokens, f.config.dim])).output;
      expect(Buffer.compare(Buffer.from(async.buffer), Buffer.from(output.buffer))).toBe(0);
    });
  }

  it('a missing or misshapen expert weight names the tensor; the old weights stay', () => {
    const f = fixture<MoeFixture>('moe-softmax.json');
    const moe = block(f, 0);
    const before = moe.forward(Float32Array.from(f.x), [f.config.tokens, f.config.dim]).output;
    expect(() => moe.loadStateDict({ 'gate.weight': f32([8, 16], f.gate_w) })).toThrow(/missing tensor 'experts.0.w1.weight' \(expected shape \[8, 16\]\)/);
    expect(() => moe.loadStateDict({ 'gate.weight': f32([4, 32], f.gate_w) })).toThrow(/tensor 'gate.weight' has shape \[4, 32\] but the block expects \[8, 16\]/);
    const after = moe.forward(Float32Array.from(f.x), [f.config.tokens, f.config.dim]).output;
    expect(Buffer.compare(Buffer.from(after.buffer), Buffer.from(before.buffer))).toBe(0);
    expect(() => new MoE({ dim: 4, numExperts: 6, ffnDim: 2, topk: 2, nGroups: 4 })).toThrow(/config.numExperts \(6\) must be divisible by config.nGroups \(4\)/);
    expect(() => new MoE({ dim: 4, numExperts: 6, ffnDim: 2, topk: 7 })).toThrow(/config.topk must be in \[1, 6\], got 7/);
  });
});
