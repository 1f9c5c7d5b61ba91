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

describe('weights swapped while forwards run', () => {
  it('MoE.loadStateDict during 10 forwardAsync calls: each result is entirely the old block or entirely the new one', async () => {
    const { MoE: Block } = await import('../src/index.js');
    const config = { dim: 16, numExperts: 8, ffnDim: 8, topk: 2, routeScale: 1, scoreFunc: 'softmax' as const };
    let s = 7;
    const rand = (n: number, scale: number) => Float32Array.from({ length: n }, () => {
      s = (Math.imul(s, 1103515245) + 12345) >>> 0;
      return ((s / 4294967296) * 2 - 1) * scale;
    });
    const dict = () => {
      const d: Record<string, { dtype: 'F32'; shape: number[]; data: Float32Array }> = { 'gate.weight': { dtype: 'F32', shape: [8, 16], data: rand(128, 1) } };
      for (let e = 0; e < 8; e++) {
        d[`experts.${e}.w1.weight`] = { dtype: 'F32', shape: [8, 16], data: rand(128, 0.5) };
        d[`experts.${e}.w3.weight`] = { dtype: 'F32', shape: [8, 16], data: rand(128, 0.5) };
        d[`experts.${e}.w2.weight`] = { dtype: 'F32', shape: [16, 8], data: rand(128, 0.5) };
      }
      return d;
    };
    const [a, b] = [dict(), dict()];
    const x = rand(64 * 16, 1);
    const refA = new Block(config, { device: 'cpu' });
    refA.loadStateDict(a);
    const refB = new Block(config, { device: 'cpu' });
    refB.loadStateDict(b);
    const wantA = Buffer.from(refA.forward(x, [64, 16]).output.buffer);
    const wantB = Buffer.from(refB.forward(x, [64, 16]).output.buffer);
    const block = new Block(config, { device: 'cpu' });
    block.loadStateDict(a);
    const calls = Array.from({ length: 10 }, () => block.forwardAsync(x, [64, 16]));
    block.loadStateDict(b); // while the routing of every call is in flight
    for (const r of await Promise.all(calls)) {
      const got = Buffer.from(r.output.buffer);
      expect(got.equals(wantA) || got.equals(wantB)).toBe(true);
    }
  });
});
