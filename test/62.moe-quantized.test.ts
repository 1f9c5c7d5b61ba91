import { describe, expect, it } from 'vitest';

import { dequantizeWeight, quantizeWeight, weightFromTensors, type QuantizedWeight, type Tensor } from '../src/index.js';
import { native } from '../src/native/index.js';
import { fixture } from './helpers/fixtures.js';
import { emptyBlock, stateDictOf, type MoeFixture } from './helpers/moe-fixture.js';
import { quantisedMoeDict } from './helpers/moe-quantised.js';
import { moeNanCodeCheck } from './helpers/moe-nan-code.js';

const E2M1 = [0, 0.5, 1, 1.5, 2, 3, 4, 6];
const sameBits = (a: Float32Array, b: Float32Array) => Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0;

let seed = 7;
function normal(n: number, std = 1): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    const u = (seed + 0.5) / 4294967296;
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    const v = seed / 4294967296;
    out[i] = std * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }
  return out;
}

describe('quantised weights: codes, scales and their exact values', () => {
  it('every e2m1 code decodes to its value; scales are powers of two (UE8M0)', () => {
    // Codes 0..15 in one row of 16 inputs, the row's scale 2^(130-127) = 8.
    const codes = Uint8Array.from({ length: 8 }, (_, j) => (2 * j) | ((2 * j + 1) << 4));
    const w: QuantizedWeight = { format: 'e2m1', shape: [1, 16], codes, scales: Uint8Array.of(130), blockRows: 1 };
    const values = Array.from(dequantizeWeight(w));
    expect(values).toEqual([...E2M1, ...E2M1.map((v) => -v)].map((v) => v * 8));
    expect(Object.is(values[8], -0)).toBe(true);
  });

  it('rounds to nearest, ties to the even code, with the smallest scale that clips nothing', () => {
    // amax 6 -> scale 1; 2.5 ties 2|3 -> 2; 5 ties 4|6 -> 4; 0.25 ties 0|0.5 -> 0; 0.75 -> 1 (even code 2)
    const w = Float32Array.of(6, 2.5, 5, 0.25, 0.75, -1.25, -1.75, 3.5);
    const q = quantizeWeight(w, [1, 8], 'e2m1');
    expect(Array.from(q.scales!)).toEqual([127]);
    expect(Array.from(dequantizeWeight(q))).toEqual([6, 2, 4, 0, 1, -1, -2, 4]);
    for (const format of ['e2m1', 'e4m3'] as const) {
      const max = format === 'e2m1' ? 6 : 448;
      const n = 40, k = 70;
      const x = normal(n * k, 0.02);
      const qq = quantizeWeight(x, [n, k], format);
      const blockRows = format === 'e2m1' ? 1 : 32;
      expect(qq.blockRows).toBe(blockRows);
      const blocks = Math.ceil(k / 32);
      expect(qq.scales!.length).toBe(Math.ceil(n / blockRows) * blocks);
      const back = dequantizeWeight(qq);
      for (let g = 0; g < Math.ceil(n / blockRows); g++) {
        for (let b = 0; b < blocks; b++) {
          let amax = 0;
          for (let r = g * blockRows; r < Math.min(n, (g + 1) * blockRows); r++) {
            for (let i = b * 32; i < Math.min(k, (b + 1) * 32); i++) amax = Math.max(amax, Math.abs(x[r * k + i]));
          }
          const scale = 2 ** (qq.scales![g * blocks + b] - 127);
          expect(amax / scale).toBeLessThanOrEqual(max);
          expect(amax / (scale / 2)).toBeGreaterThan(max);
        }
      }
      // Each value is within half a step of its block's grid: e2m1 keeps 1 mantissa bit
      // (subnormal step 0.5 x scale), e4m3 keeps 3 (subnormal step 2^-9 x scale).
      const [rel, floor] = format === 'e2m1' ? [0.25, 0.25] : [0.0625, 2 ** -10];
      for (let i = 0; i < x.length; i++) {
        const r = Math.floor(i / k), c = i % k;
        const scale = 2 ** (qq.scales![Math.floor(r / blockRows) * blocks + Math.floor(c / 32)] - 127);
        expect(Math.abs(back[i] - x[i])).toBeLessThanOrEqual(rel * Math.abs(x[i]) + floor * scale);
      }
    }
  });

  it('values already on the grid survive quantisation exactly (bf16, f16, e4m3, e2m1)', () => {
    const n = 33, k = 64;
    for (const format of ['bf16', 'f16', 'e4m3', 'e2m1'] as const) {
      const first = quantizeWeight(normal(n * k, 0.5), [n, k], format);
      const grid = dequantizeWeight(first);
      const again = quantizeWeight(grid, [n, k], format);
      // (codes may differ where a smaller scale also holds the block: the values do not)
      const back = dequantizeWeight(again);
      expect(back.every((v, i) => v === grid[i])).toBe(true);
    }
  });
});

describe('GEMM over quantised weights equals the GEMM over their fp32 values, bit for bit', () => {
  // n not a multiple of the panel width, k spanning three k blocks and a partial scale block.
  for (const format of ['bf16', 'f16', 'e4m3', 'e2m1'] as const) {
    for (const cpuKernel of ['baseline', 'auto', ...native().buildInfo().cpuFeatures.filter((f) => f === 'avx2')]) {
      // m = 37: panel slices decoded into a buffer for four row tiles; m = 5 and 3: one
      // tile, decoded straight into the FMA loop.
      it.each([37, 5, 3])(`${format} (${cpuKernel} kernel), %i rows`, (m) => {
        const n = 70, k = 2118;
        const q = quantizeWeight(normal(n * k, 0.05), [n, k], format, { blockRows: format === 'e4m3' ? 32 : 1 });
        const dense = dequantizeWeight(q);
        const bias = normal(n);
        const x = normal(m * k);
        let scales = q.scales;
        if (format === 'e4m3') { // the packer takes one scale row per weight row
          const blocks = Math.ceil(k / 32);
          scales = new Uint8Array(n * blocks);
          for (let r = 0; r < n; r++) scales.set(q.scales!.subarray(Math.floor(r / 32) * blocks, Math.floor(r / 32) * blocks + blocks), r * blocks);
        }
        const packedCodes = native().packLinear({ format, codes: q.codes, scales, bias, n, k, cpuKernel });
        const packedDense = native().packLinear({ weight: dense, bias, n, k, cpuKernel });
        const a = new Float32Array(m * n), b = new Float32Array(m * n), one = new Float32Array(m * n);
        native().linear({ weight: packedCodes, x, m, out: a, threads: 0 });
        native().linear({ weight: packedDense, x, m, out: b, threads: 0 });
        native().linear({ weight: packedCodes, x, m, out: one, threads: 1 });
        expect(sameBits(a, b)).toBe(true);
        expect(sameBits(one, a)).toBe(true);
        // A row computed alone (the one-row kernel) has the bits it has inside a full tile.
        const alone = new Float32Array(n);
        native().linear({ weight: packedCodes, x: x.subarray(0, k), m: 1, out: alone, threads: 0 });
        expect(sameBits(alone, a.subarray(0, n))).toBe(true);
        // and it is the product: one element against a float64 sum
        const row = m - 1;
        let sum = bias[5];
        for (let i = 0; i < k; i++) sum += x[row * k + i] * dense[5 * k + i];
        expect(Math.abs(a[row * n + 5] - sum)).toBeLessThan(1e-4 * (1 + Math.abs(sum)));
      });
    }
  }
});

describe('e4m3 weights packed for the AVX512-BF16 kernel straight from their codes', () => {
  const hasBf16 = native().buildInfo().cpuFeatures.includes('avx512bf16');
  // k odd and past one pair block (1024 inputs); n off the panel width; inputs exact in bf16.
  it.each([37, 5, 200])('the bits of the bf16 panels of the dequantised matrix, %i rows', (m) => {
    const n = 70, k = 2119;
    const q = quantizeWeight(normal(n * k, 0.05), [n, k], 'e4m3', { blockRows: 1 });
    const dense = dequantizeWeight(q);
    const bias = normal(n);
    const x = normal(m * k).map((v) => new Float32Array(new Uint32Array([new Uint32Array(Float32Array.of(v).buffer)[0] & 0xffff0000]).buffer)[0]);
    const codes = native().packLinear({ format: 'e4m3', codes: q.codes, scales: q.scales, bias, n, k, preferBf16: true });
    const panels = native().packLinear({ weight: dense, bias, n, k, preferBf16: true });
    expect(native().linearKernel({ weight: codes })).toBe(hasBf16 ? 'avx512-bf16' : native().linearKernel({ weight: panels }));
    const a = new Float32Array(m * n), b = new Float32Array(m * n);
    native().linear({ weight: codes, x, m, out: a, threads: 0 });
    native().linear({ weight: panels, x, m, out: b, threads: 0 });
    expect(sameBits(a, b)).toBe(true);
    // A scale that would make some value inexact in bf16 keeps the fp32 kernel.
    const tiny = Uint8Array.from(q.scales!, (s, i) => (i === 3 ? 9 : s));
    expect(native().linearKernel({ weight: native().packLinear({ format: 'e4m3', codes: q.codes, scales: tiny, n, k, preferBf16: true }) })).not.toBe('avx512-bf16');
  });
});

describe('MoE with V4.1 weight formats', () => {
  const f = fixture<MoeFixture>('v41-moe.json');
  const shape: [number, number] = [f.config.tokens, f.config.dim];

  it('MXFP4 experts and an fp8 shared expert give the bits of their fp32 values; they hold ~1/8 and ~1/4 of the bytes', async () => {
    const { quantised, dequantised } = quantisedMoeDict(f);
    const q = emptyBlock(f, 1e-20);
    q.loadStateDict(quantised);
    const d = emptyBlock(f, 1e-20);
    d.loadStateDict(dequantised);
    const x = Float32Array.from(f.x);
    const a = q.forward(x, shape);
    const b = d.forward(x, shape);
    expect(Array.from(a.route.indices)).toEqual(f.topk_idx.flat());
    expect(sameBits(a.output, b.output)).toBe(true);
    expect(sameBits((await q.forwardAsync(x, shape)).output, a.output)).toBe(true);
    // MXFP4 is lossy (one mantissa bit): the block's output stays close in direction to
    // the reference's fp32 block.
    let dot = 0, aa = 0, rr = 0;
    for (let i = 0; i < f.output.length; i++) {
      dot += a.output[i] * f.output[i];
      aa += a.output[i] ** 2;
      rr += f.output[i] ** 2;
    }
    expect(dot / Math.sqrt(aa * rr)).toBeGreaterThan(0.98);
    const { routed, shared } = q.expertBytes;
    const dense = d.expertBytes;
    const F = f.config.ffn_dim, D = f.config.dim;
    // per routed expert: gate+up codes and per-row scales, down codes and scales
    expect(routed).toBe(f.config.experts * (2 * F * (D / 2) + 2 * F * Math.ceil(D / 32) + D * (F / 2) + D * Math.ceil(F / 32)));
    expect(dense.routed).toBe(f.config.experts * 3 * F * D * 4);
    expect(shared).toBeLessThan(dense.shared / 3);
  });

  it('fp8 experts at decode sizes, one holding an e4m3 NaN code: NaN exactly where it reaches, the F32 bits elsewhere', () => {
    const r = moeNanCodeCheck();
    expect(r.sameBits).toBe(true);
    expect(r.nanOutputs).toBeGreaterThan(0);
    expect(r.nanOutputs).toBeLessThan(r.tokens); // one output of the tokens routed to expert 0
  });

  it('bf16 activations are widened exactly', () => {
    const moe = emptyBlock(f, 1e-20);
    moe.loadStateDict(stateDictOf(f));
    const bits = Uint16Array.from(f.x, (v) => new Uint32Array(Float32Array.of(v).buffer)[0] >>> 16);
    const widened = new Float32Array(Uint32Array.from(bits, (b) => b << 16).buffer);
    expect(sameBits(moe.forward(bits, [f.config.tokens, f.config.dim]).output, moe.forward(widened, [f.config.tokens, f.config.dim]).output)).toBe(true);
    expect(() => moe.forward(new Int16Array(4) as unknown as Uint16Array, [2, 2])).toThrow(TypeError);
  });

  it('bad quantised weights name the tensor; the old weights stay', () => {
    const { quantised } = quantisedMoeDict(f);
    const moe = emptyBlock(f, 1e-20);
    moe.loadStateDict(quantised);
    const x = Float32Array.from(f.x);
    const before = moe.forward(x, shape).output;
    const without = { ...quantised };
    delete without['experts.3.w2.scale'];
    expect(() => moe.loadStateDict(without)).toThrow(/missing tensor 'experts.3.w2.scale' \(the UE8M0 scales of U8 'experts.3.w2.weight'\)/);
    expect(() => moe.loadStateDict({ ...quantised, 'experts.0.w1.scale': { dtype: 'F8_E8M0', shape: [16, 2], data: new Uint8Array(32) } }))
      .toThrow(/tensor 'experts.0.w1.scale' has shape \[16, 2\] but the block expects \[16, 1\]/);
    expect(() => moe.loadStateDict({ ...quantised, 'experts.0.w1.weight': { dtype: 'U8', shape: [16, 24], data: new Uint8Array(384) } }))
      .toThrow(/tensor 'experts.0.w1.weight' has shape \[16, 24\] but the block expects \[16, 12\]/);
    expect(() => moe.loadStateDict({ ...quantised, 'experts.0.w3.weight': { dtype: 'F32', shape: [16, 24], data: new Float32Array(384) } }))
      .toThrow(/tensor 'experts.0.w3.weight' is quantised but|must have the format/);
    expect(() => moe.loadStateDict({ ...quantised, 'experts.0.w1.scale': { dtype: 'F32', shape: [16, 1], data: new Float32Array(16) } }))
      .toThrow(/tensor 'experts.0.w1.scale' must be F8_E8M0, got F32/);
    expect(sameBits(moe.forward(x, shape).output, before)).toBe(true);
    expect(() => weightFromTensors('w', { dtype: 'I64', shape: [2, 2], data: new BigInt64Array(4) }, 'w.scale', undefined, [2, 2])).toThrow(/tensor 'w' must be F32, BF16/);
    expect(() => quantizeWeight(new Float32Array(6), [2, 3], 'e2m1')).toThrow(/e2m1 weights need an even k, got 3/);
    expect(() => quantizeWeight(new Float32Array(6), [2, 3], 'f8' as 'e4m3')).toThrow(/format must be 'bf16', 'f16', 'e4m3' or 'e2m1', got "f8"/);
  });
});
