// A Mixture-of-Experts block (DeepSeek-V3 names): route 4 tokens to 2 of 8 experts, run
// the SwiGLU experts and combine.   node examples/moe.mjs
import { MoE } from 'engram-kernels';

const [dim, ffnDim, numExperts] = [64, 32, 8];
let seed = 1;
const random = (n) => Float32Array.from({ length: n }, () => ((seed = (seed * 48271) % 2147483647) / 2147483647 - 0.5) * 0.2);
const weights = { 'gate.weight': { dtype: 'F32', shape: [numExperts, dim], data: random(numExperts * dim) } };
for (let e = 0; e < numExperts; e++) {
  weights[`experts.${e}.w1.weight`] = { dtype: 'F32', shape: [ffnDim, dim], data: random(ffnDim * dim) };
  weights[`experts.${e}.w3.weight`] = { dtype: 'F32', shape: [ffnDim, dim], data: random(ffnDim * dim) };
  weights[`experts.${e}.w2.weight`] = { dtype: 'F32', shape: [dim, ffnDim], data: random(dim * ffnDim) };
}
const moe = new MoE({ dim, numExperts, ffnDim, topk: 2, scoreFunc: 'softmax', routeScale: 1 });
moe.loadStateDict(weights);
const tokens = 4;
const { output, route } = moe.forward(random(tokens * dim), [tokens, dim]);
for (let t = 0; t < tokens; t++) console.log(`token ${t}: experts ${route.indices.subarray(t * 2, t * 2 + 2).join(', ')}, output[0] ${output[t * dim].toFixed(6)}`);
