import { describe, expect, it } from 'vitest';

import { devices, MoE } from '../src/index.js';
import { block, f32, type MoeFixture } from './helpers/moe-fixture.js';
import { fixture } from './helpers/fixtures.js';
import { maxRelError } from './helpers/forward-small.js';

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
    expect(() => new MoE({ dim: 4, numExperts: 6, ffnDim: 2, topk: 2 }, { device: 'gpu' as 'cuda' })).toThrow(/options.device must be 'cpu', 'cuda' or 'auto', got "gpu"/);
    if (devices().length === 0) {
      expect(() => new MoE({ dim: 4, numExperts: 6, ffnDim: 2, topk: 2 }, { device: 'cuda' })).toThrow(/device 'cuda' was requested but no CUDA device is available/);
      expect(new MoE({ dim: 4, numExperts: 6, ffnDim: 2, topk: 2 }).device).toBe('cpu');
    }
  });
});
