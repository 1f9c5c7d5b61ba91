// The MoE fixtures' weights in DeepSeek-V4.1's formats: MXFP4 routed experts, an fp8
// (32x32 UE8M0 blocks) shared expert; and the same values dequantised to F32.
import { dequantizeWeight, quantizeWeight, type Tensor } from '../../src/index.js';
import { stateDictOf, type MoeFixture } from './moe-fixture.js';

/** The fixture's expert weights as V4.1 ships them: MXFP4 routed experts, fp8 (32x32 blocks) shared expert. */
export function quantisedMoeDict(f: MoeFixture): { quantised: Record<string, Tensor>; dequantised: Record<string, Tensor> } {
  const dict = stateDictOf(f);
  const quantised: Record<string, Tensor> = {};
  const dequantised: Record<string, Tensor> = {};
  for (const [name, t] of Object.entries(dict)) {
    const expert = /^(experts\.\d+|shared_experts)\.w[123]\.weight$/.exec(name);
    if (!expert) {
      quantised[name] = dequantised[name] = t;
      continue;
    }
    const format = expert[1] === 'shared_experts' ? 'e4m3' : 'e2m1';
    const [n, k] = t.shape as [number, number];
    const q = quantizeWeight(t.data as Float32Array, [n, k], format);
    const scaleName = name.replace(/\.weight$/, '.scale');
    quantised[name] = format === 'e2m1'
      ? { dtype: 'U8', shape: [n, k / 2], data: q.codes }
      : { dtype: 'F8_E4M3', shape: [n, k], data: q.codes };
    quantised[scaleName] = { dtype: 'F8_E8M0', shape: [Math.ceil(n / q.blockRows), Math.ceil(k / 32)], data: q.scales! };
    dequantised[name] = { dtype: 'F32', shape: [n, k], data: dequantizeWeight(q) };
  }
  return { quantised, dequantised };
}

