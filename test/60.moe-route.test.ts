import { describe, expect, it } from 'vitest';

import { devices, moeLayout, moeLayoutAsync, moeRoute, moeRouteAsync, type ScoreFunc } from '../src/index.js';
import { fixture } from './helpers/fixtures.js';
import { maxRelError } from './helpers/forward-small.js';
import { randInt, rng } from './helpers/random.js';

interface MoeFixture {
  config: { tokens: number; dim: number; experts: number; n_groups?: number; topk_groups?: number; topk: number; route_scale?: number; routed_scaling_factor?: number; score_func: ScoreFunc; gate_temp?: number };
  x: number[];
  gate_w: number[];
  bias: number[] | null;
  topk_idx: number[][];
  topk_weight: number[][];
  expert_counts?: number[];
}

const cases: Array<[string, number]> = [['moe-sigmoid-grouped.json', 0], ['moe-softmax.json', 0], ['v41-moe.json', 1e-20]];

describe('MoE routing equals the reference', () => {
  for (const [file, normEps] of cases) {
    it(file, () => {
      const f = fixture<MoeFixture>(file);
      const c = f.config;
      const r = moeRoute(Float32Array.from(f.x), Float32Array.from(f.gate_w), [c.tokens, c.dim], {
        topk: c.topk,
        bias: f.bias ? Float32Array.from(f.bias) : undefined,
        nGroups: c.n_groups ?? 1,
        topkGroups: c.topk_groups ?? 1,
        scoreFunc: c.score_func,
        gateTemp: c.gate_temp,
        routeScale: c.route_scale ?? c.routed_scaling_factor ?? 1,
        normEps,
      });
      expect(Array.from(r.indices)).toEqual(f.topk_idx.flat());
      expect(maxRelError(r.weights, f.topk_weight.flat())).toBeLessThan(1e-4);
      if (f.expert_counts) {
        expect(Array.from(moeLayout(r.indices, c.experts, { topk: c.topk }).countsPerExpert)).toEqual(f.expert_counts);
      }
    });
  }
});

describe('async twins', () => {
  it('moeRouteAsync and moeLayoutAsync give the bits of the sync calls', async () => {
    const f = fixture<MoeFixture>('moe-sigmoid-grouped.json');
    const c = f.config;
    const options = { topk: c.topk, bias: f.bias ? Float32Array.from(f.bias) : undefined, nGroups: c.n_groups ?? 1, topkGroups: c.topk_groups ?? 1, scoreFunc: c.score_func, routeScale: c.route_scale ?? c.routed_scaling_factor ?? 1 };
    const x = Float32Array.from(f.x);
    const w = Float32Array.from(f.gate_w);
    const sync = moeRoute(x, w, [c.tokens, c.dim], options);
    const pending = moeRouteAsync(x, w, [c.tokens, c.dim], options);
    const got = await pending;
    expect(Array.from(got.indices)).toEqual(Array.from(sync.indices));
    expect(Buffer.from(got.weights.buffer).equals(Buffer.from(sync.weights.buffer))).toBe(true);
    expect(Buffer.from(got.logits.buffer).equals(Buffer.from(sync.logits.buffer))).toBe(true);
    const layout = await moeLayoutAsync(sync.indices, c.experts, { topk: c.topk, expertToRank: Int32Array.from({ length: c.experts }, (_, e) => e % 4) });
    const want = moeLayout(sync.indices, c.experts, { topk: c.topk, expertToRank: Int32Array.from({ length: c.experts }, (_, e) => e % 4) });
    expect(Array.from(layout.permutation)).toEqual(Array.from(want.permutation));
    expect(Array.from(layout.countsPerRank!)).toEqual(Array.from(want.countsPerRank!));
    await expect(moeRouteAsync(x, w, [c.tokens, c.dim], { ...options, topk: 0 })).rejects.toThrow(RangeError);
  });
});

describe('dispatch layout', () => {
  it('a stable permutation by expert then token; per-rank counts count a token once per rank', () => {
    const r = rng(3);
    const tokens = 50;
    const topk = 4;
    const experts = 16;
    const indices = new Int32Array(tokens * topk);
    for (let t = 0; t < tokens; t++) {
      const chosen = new Set<number>();
      while (chosen.size < topk) chosen.add(randInt(r, 0, experts - 1));
      indices.set([...chosen], t * topk);
    }
    const expertToRank = Int32Array.from({ length: experts }, (_, e) => e >> 2);
    const l = moeLayout(indices, experts, { topk, expertToRank });
    const pairs = Array.from(l.permutation);
    expect([...pairs].sort((a, b) => a - b)).toEqual(Array.from({ length: tokens * topk }, (_, i) => i));
    for (let e = 0; e < experts; e++) {
      const mine = pairs.slice(l.offsets[e], l.offsets[e] + l.countsPerExpert[e]);
      expect(mine.every((p) => indices[p] === e)).toBe(true);
      expect(mine).toEqual([...mine].sort((a, b) => a - b)); // token order kept
    }
    for (let rank = 0; rank < 4; rank++) {
      let want = 0;
      for (let t = 0; t < tokens; t++) if (Array.from(indices.subarray(t * topk, (t + 1) * topk)).some((e) => e >> 2 === rank)) want++;
      expect(l.countsPerRank![rank]).toBe(want);
    }
    // permutation then "combine" with weight 1 and identity experts returns the input
    const x = Float32Array.from({ length: tokens }, () => r());
    const dispatched = Float32Array.from(pairs, (p) => x[Math.floor(p / topk)]);
    const combined = new Float32Array(tokens);
    pairs.forEach((p, i) => (combined[Math.floor(p / topk)] += dispatched[i] / topk));
    expect(maxRelError(combined, x)).toBeLessThan(1e-6);
  });

  it('top-k is the order (score descending, NaN last, lower expert first) on random ties and NaN', () => {
    const r = rng(21);
    for (let trial = 0; trial < 200; trial++) {
      const experts = randInt(r, 2, 64);
      const topk = randInt(r, 1, Math.min(experts, 9));
      // logits on a coarse grid (many ties), some NaN; dim 1 with x = 1: logits = gate
      const gate = Float32Array.from({ length: experts }, () => (r() < 0.1 ? NaN : randInt(r, -3, 3) / 2));
      const got = Array.from(moeRoute(Float32Array.of(1), gate, [1, 1], { topk, scoreFunc: 'sigmoid', device: 'cpu' }).indices);
      const order = Array.from({ length: experts }, (_, e) => e).sort((a, b) => {
        const [x, y] = [gate[a], gate[b]];
        if (Number.isNaN(x) !== Number.isNaN(y)) return Number.isNaN(x) ? 1 : -1;
        if (!Number.isNaN(x) && x !== y) return y - x;
        return a - b;
      });
      expect(got).toEqual(order.slice(0, topk));
    }
  });

  it('ties go to the lower expert; NaN scores never crash', () => {
    const x = Float32Array.of(1, 1);
    const gate = new Float32Array(8 * 2); // every logit 0: all tied
    const r = moeRoute(x, gate, [1, 2], { topk: 3, scoreFunc: 'sigmoid' });
    expect(Array.from(r.indices)).toEqual([0, 1, 2]);
    const nan = moeRoute(Float32Array.of(NaN, 1), gate, [1, 2], { topk: 2, scoreFunc: 'softmax' });
    expect(new Set(nan.indices).size).toBe(2);
  });

  it('bad input is a clear error', () => {
    const gate = new Float32Array(8 * 4);
    const x = new Float32Array(4);
    expect(() => moeRoute(x, gate, [1, 4], { topk: 9 })).toThrow(/options.topk must be in \[1, 8\], got 9/);
    expect(() => moeRoute(x, gate, [1, 4], { topk: 2, nGroups: 3 })).toThrow(/8 experts do not split into options.nGroups = 3 groups/);
    expect(() => moeRoute(x, gate, [1, 4], { topk: 2, nGroups: 4, topkGroups: 5 })).toThrow(/options.topkGroups must be in \[1, 4\], got 5/);
    expect(() => moeRoute(x.subarray(1), gate, [1, 4], { topk: 2 })).toThrow(/x has 3 elements but 4 are needed/);
    expect(() => moeLayout(Int32Array.of(0, 9), 8, { topk: 2 })).toThrow(/indices\[1\] = 9 is outside \[0, 8\)/);
    expect(() => moeRoute(x, gate, [1, 4], { topk: 2, device: 'gpu' as 'cuda' })).toThrow(/options.device must be 'cpu', 'cuda' or 'auto', got "gpu"/);
    if (devices().length === 0) {
      expect(() => moeRoute(x, gate, [1, 4], { topk: 2, device: 'cuda' })).toThrow(/device 'cuda' was requested but no CUDA device is available/);
    }
  });
});
