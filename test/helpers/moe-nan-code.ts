// An MoE whose fp8 (e4m3, 32x32 UE8M0 blocks) experts hold one e4m3 NaN code in one
// expert, run at decode sizes (1 to 4 tokens: the GEMM decodes the codes inside its FMA
// loop) and compared with the same MoE on the dequantised F32 weights: NaN exactly where
// that code reaches, the same bits everywhere else. Panels with and without a NaN code
// take different decode paths on some CPU builds.
import { dequantizeWeight, MoE, quantizeWeight, type Tensor } from '../../src/index.js';
import { rng } from './random.js';

export function moeNanCodeCheck(): { sameBits: boolean; nanOutputs: number; tokens: number } {
  const dim = 128, ffn = 64, experts = 4;
  const r = rng(17);
  const values = (n: number, scale: number) => Float32Array.from({ length: n }, () => (r() * 2 - 1) * scale);
  const gate: Tensor = { dtype: 'F32', shape: [experts, dim], data: values(experts * dim, 0.2) };
  const quantised: Record<string, Tensor> = { 'gate.weight': gate };
  const dequantised: Record<string, Tensor> = { 'gate.weight': gate };
  for (let e = 0; e < experts; e++) {
    for (const [name, n, k] of [['w1', ffn, dim], ['w3', ffn, dim], ['w2', dim, ffn]] as const) {
      const q = quantizeWeight(values(n * k, 0.1), [n, k], 'e4m3');
      if (e === 0 && name === 'w2') q.codes[37 * k + 5] = 0x7f; // output 37 of expert 0 reads a NaN weight
      quantised[`experts.${e}.${name}.weight`] = { dtype: 'F8_E4M3', shape: [n, k], data: q.codes };
      quantised[`experts.${e}.${name}.scale`] = { dtype: 'F8_E8M0', shape: [Math.ceil(n / q.blockRows), Math.ceil(k / 32)], data: q.scales! };
      dequantised[`experts.${e}.${name}.weight`] = { dtype: 'F32', shape: [n, k], data: dequantizeWeight(q) };
    }
  }
  const config = { dim, numExperts: experts, ffnDim: ffn, topk: 2 };
  const fp8 = new MoE(config, { device: 'cpu' });
  fp8.loadStateDict(quantised);
  const f32 = new MoE(config, { device: 'cpu' });
  f32.loadStateDict(dequantised);
  let sameBits = true;
  let nanOutputs = 0;
  let tokens = 0;
  for (const n of [1, 2, 4]) {
    for (let step = 0; step < 6; step++) {
      const x = values(n * dim, 1);
      const a = fp8.forward(x, [n, dim]).output;
      const b = f32.forward(x, [n, dim]).output;
      for (let i = 0; i < a.length; i++) {
        if (Number.isNaN(a[i]) || Number.isNaN(b[i])) {
          if (!(Number.isNaN(a[i]) && Number.isNaN(b[i]))) sameBits = false;
          nanOutputs += Number.isNaN(a[i]) ? 1 : 0;
        } else if (!Object.is(a[i], b[i])) {
          sameBits = false;
        }
      }
      tokens += n;
    }
  }
  return { sameBits, nanOutputs, tokens };
}
