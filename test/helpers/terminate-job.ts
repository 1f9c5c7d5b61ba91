// A worker thread's job for terminate-workers.ts: load the library, start async native
// work of one kind (workerData.kind), and keep it in flight until the parent terminates
// the thread.
import { parentPort, workerData } from 'node:worker_threads';

const kind = workerData.kind as 'load' | 'hash' | 'engram' | 'moe' | 'v41';
const ek = await import('../../src/index.js');
const tok = ek.CompressedTokenizer.fromLookup(Array.from({ length: 1000 }, (_, i) => i));
const start: Record<typeof kind, () => Promise<unknown>> = {
  load: async () => ek.buildInfo(),
  hash: () => {
    const mapping = new ek.NgramHashMapping({ engramVocabSize: 100003, maxNgramSize: 3, nHeadPerNgram: 8, layerIds: [1] }, tok);
    const ids = new Int32Array(1 << 18).map((_, i) => i % 1000);
    return mapping.hashRowsAsync(ids, [1, ids.length]);
  },
  engram: () => {
    const layer = new ek.Engram({ layerId: 1, layerIds: [1], hiddenSize: 64, hcMult: 2, nEmbedPerNgram: 128, nHeadPerNgram: 4, maxNgramSize: 3, engramVocabSize: [20011, 20011], kernelSize: 4 }, { tokenizer: tok, seed: 1 });
    const S = 4096;
    return layer.forwardAsync(new Float32Array(S * 2 * 64).fill(0.1), new Int32Array(S).map((_, i) => i % 1000), [1, S], { out: new Float32Array(S * 2 * 64) });
  },
  moe: () => {
    const moe = new ek.MoE({ dim: 64, numExperts: 8, ffnDim: 128, topk: 2 }, { device: 'cpu' });
    const f = (shape: number[]) => ({ dtype: 'F32' as const, shape, data: new Float32Array(shape[0] * shape[1]).fill(0.01) });
    const dict: Record<string, ReturnType<typeof f>> = { 'gate.weight': f([8, 64]) };
    for (let e = 0; e < 8; e++) Object.assign(dict, { [`experts.${e}.w1.weight`]: f([128, 64]), [`experts.${e}.w3.weight`]: f([128, 64]), [`experts.${e}.w2.weight`]: f([64, 128]) });
    moe.loadStateDict(dict);
    return moe.forwardAsync(new Float32Array(4096 * 64).fill(0.5), [4096, 64]);
  },
  v41: () => {
    const layer = new ek.DeepseekV41Engram({ hiddenSize: 64, hcMult: 2, maxNgramSize: 2, nHeads: 2, headDim: 32, numEmbeddings: 4096 }, { device: 'cpu' });
    const f = (shape: number[]) => ({ dtype: 'F32' as const, shape, data: new Float32Array(shape[0] * shape[1]).fill(0.05) });
    layer.loadStateDict({ 'embed.weight': f([4096, 32]), 'wkv.weight': f([192, 64]), q_weight: f([2, 64]), k_weight: f([2, 64]) });
    const S = 4096;
    return layer.forwardRowsAsync(new Float32Array(S * 2 * 64).fill(0.1), new Int32Array(S * 2).map((_, i) => (i * 7) % 4096), [1, S]);
  },
};
parentPort!.postMessage('started');
// Keep work queued back to back so the terminate lands while some is running.
for (;;) await Promise.all(Array.from({ length: 4 }, () => start[kind]().catch(() => undefined)));
