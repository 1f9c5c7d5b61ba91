// GPU suite for the MoE block: routing, grouped expert GEMMs (weights in their stored
// codes on the device), SwiGLU and combine on CUDA. Runs where a CUDA device is visible,
// says so otherwise.
import { describe, expect, it } from 'vitest';

import { MoE, moeRoute, moeRouteAsync } from '../../src/index.js';
import { gpuVisible } from '../helpers/gpu.js';
import { fixture } from '../helpers/fixtures.js';
import { maxRelError } from '../helpers/forward-small.js';
import { emptyBlock, stateDictOf, type MoeFixture } from '../helpers/moe-fixture.js';
import { quantisedMoeDict } from '../helpers/moe-quantised.js';

const visible = gpuVisible('MoE');

describe.skipIf(!visible)('CUDA MoE block', () => {
  for (const [file, normEps] of [['moe-sigmoid-grouped.json', 0], ['moe-softmax.json', 0], ['v41-moe.json', 1e-20]] as const) {
    it(`${file}: indices exact, output within 1e-4 of the reference; async gives the same bits`, async () => {
      const f = fixture<MoeFixture>(file);
      const moe = emptyBlock(f, normEps, 'cuda');
      expect(moe.device).toBe('cuda');
      moe.loadStateDict(stateDictOf(f));
      const x = Float32Array.from(f.x);
      const shape: [number, number] = [f.config.tokens, f.config.dim];
      const { output, route } = moe.forward(x, shape);
      expect(Array.from(route.indices)).toEqual(f.topk_idx.flat());
      expect(maxRelError(output, f.output)).toBeLessThan(1e-4);
      const again = (await moe.forwardAsync(x, shape)).output;
      expect(Buffer.compare(Buffer.from(again.buffer), Buffer.from(output.buffer))).toBe(0);
    });
  }

  it('standalone moeRoute on the device: the fixtures\' indices exactly, weights within 1e-5 of the CPU; async the same bits', async () => {
    for (const [file, normEps] of [['moe-sigmoid-grouped.json', 0], ['moe-softmax.json', 0], ['v41-moe.json', 1e-20]] as const) {
      const f = fixture<MoeFixture>(file);
      const c = f.config;
      const options = {
        topk: c.topk, nGroups: c.n_groups ?? 1, topkGroups: c.topk_groups ?? 1, routeScale: c.route_scale ?? c.routed_scaling_factor ?? 1,
        scoreFunc: c.score_func, gateTemp: c.gate_temp, normEps, bias: f.bias ? Float32Array.from(f.bias) : undefined,
      };
      const x = Float32Array.from(f.x), gate = Float32Array.from(f.gate_w);
      const gpu = moeRoute(x, gate, [c.tokens, c.dim], { ...options, device: 'cuda' });
      const cpu = moeRoute(x, gate, [c.tokens, c.dim], { ...options, device: 'cpu' });
      expect(Array.from(gpu.indices)).toEqual(f.topk_idx.flat());
      expect(maxRelError(gpu.weights, Array.from(cpu.weights))).toBeLessThan(1e-5);
      expect(maxRelError(gpu.logits, Array.from(cpu.logits))).toBeLessThan(1e-5);
      const again = await moeRouteAsync(x, gate, [c.tokens, c.dim], { ...options, device: 'cuda' });
      expect(Buffer.compare(Buffer.from(again.weights.buffer), Buffer.from(gpu.weights.buffer))).toBe(0);
    }
  });

  it('MXFP4 experts and an fp8 shared expert stay in their codes on the device: within 1e-5 of the CPU block', () => {
    const f = fixture<MoeFixture>('v41-moe.json');
    const { quantised } = quantisedMoeDict(f);
    const gpu = emptyBlock(f, 1e-20, 'cuda');
    gpu.loadStateDict(quantised);
    const cpu = emptyBlock(f, 1e-20);
    cpu.loadStateDict(quantised);
    const x = Float32Array.from(f.x);
    const shape: [number, number] = [f.config.tokens, f.config.dim];
    const a = gpu.forward(x, shape);
    const b = cpu.forward(x, shape);
    expect(Array.from(a.route.indices)).toEqual(Array.from(b.route.indices));
    expect(maxRelError(a.output, Array.from(b.output))).toBeLessThan(1e-5);
    expect(gpu.expertBytes).toEqual(cpu.expertBytes);
  });

  it('a larger block (256 experts, 512 tokens) agrees with the CPU within 1e-4', () => {
    const dim = 256, E = 256, F = 32, N = 512;
    let s = 5;
    const rand = (n: number, scale: number) => Float32Array.from({ length: n }, () => {
      s = (Math.imul(s, 1103515245) + 12345) >>> 0;
      return ((s / 4294967296) * 2 - 1) * scale;
    });
    const dict: Record<string, { dtype: 'F32'; shape: number[]; data: Float32Array }> = {
      'gate.weight': { dtype: 'F32', shape: [E, dim], data: rand(E * dim, 0.1) },
      'gate.bias': { dtype: 'F32', shape: [E], data: rand(E, 0.01) },
    };
    for (let e = 0; e < E; e++) {
      dict[`experts.${e}.w1.weight`] = { dtype: 'F32', shape: [F, dim], data: rand(F * dim, 0.05) };
      dict[`experts.${e}.w3.weight`] = { dtype: 'F32', shape: [F, dim], data: rand(F * dim, 0.05) };
      dict[`experts.${e}.w2.weight`] = { dtype: 'F32', shape: [dim, F], data: rand(dim * F, 0.1) };
    }
    const config = { dim, numExperts: E, ffnDim: F, topk: 8, nGroups: 8, topkGroups: 4, routeScale: 2.5, scoreFunc: 'sigmoid' as const };
    const gpu = new MoE(config, { device: 'cuda' });
    const cpu = new MoE(config, { device: 'cpu' });
    gpu.loadStateDict(dict);
    cpu.loadStateDict(dict);
    const x = rand(N * dim, 1);
    const a = gpu.forward(x, [N, dim]);
    const b = cpu.forward(x, [N, dim]);
    expect(Array.from(a.route.indices)).toEqual(Array.from(b.route.indices));
    expect(maxRelError(a.output, Array.from(b.output))).toBeLessThan(1e-4);
  });
});
