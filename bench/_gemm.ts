import { native } from '../src/native.js';
const m = 2048, k = 2048, n = 4096;
const w = new Float32Array(n * k).map((_, i) => Math.fround(Math.sin(i) * 0.02));
// bf16-exact copies for the bf16 kernel
const wb = new Float32Array(new Uint32Array(new Uint32Array(w.buffer).map((u) => u & 0xffff0000)).buffer);
const x = new Float32Array(m * k).map((_, i) => Math.cos(i));
const xb = new Float32Array(new Uint32Array(new Uint32Array(x.buffer).map((u) => u & 0xffff0000)).buffer);
const peak = native().peakGflops({ threads: 0, seconds: 0.5 });
for (const [name, h, xx] of [['fp32', native().packLinear({ weight: w, n, k }), x], ['bf16', native().packLinear({ weight: wb, n, k, preferBf16: true }), xb]] as const) {
  const out = new Float32Array(m * n);
  native().linear({ weight: h, x: xx, m, out, threads: 0 });
  const ts: number[] = [];
  for (let i = 0; i < 5; i++) { const t0 = process.hrtime.bigint(); native().linear({ weight: h, x: xx, m, out, threads: 0 }); ts.push(Number(process.hrtime.bigint() - t0) / 1e9); }
  ts.sort();
  const g = 2 * m * n * k / ts[2] / 1e9;
  console.log(name, native().linearKernel({ weight: h }), g.toFixed(0), 'GFLOP/s', (100 * g / peak).toFixed(0) + '% of fp32 peak', peak.toFixed(0));
}
