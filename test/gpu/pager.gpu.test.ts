// GPU suite for the pager: the cache in device memory, pages copied on a copy stream from
// the table pinned in host memory. Runs where a CUDA device is visible, says so otherwise.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { CompressedTokenizer, DeepseekV41EngramModel, Engram, writeSyntheticV41Checkpoint } from '../../src/index.js';
import { gpuVisible } from '../helpers/gpu.js';
import { rng } from '../helpers/random.js';

const visible = gpuVisible('pager');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'engram-gpu-pager-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
const bits = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

describe.skipIf(!visible)('CUDA pager', () => {
  const tokenizer = CompressedTokenizer.deepseekV3();
  const config = { layerId: 1, layerIds: [1], hiddenSize: 32, hcMult: 2, nEmbedPerNgram: 64, nHeadPerNgram: 2, maxNgramSize: 3, engramVocabSize: [3001, 3001], kernelSize: 4 };

  it('the paper layer through a device cache gives the bits of the same layer with its table uploaded whole', async () => {
    const whole = new Engram(config, { tokenizer, tableDtype: 'bf16', seed: 3, device: 'cuda' });
    const paged = new Engram(config, { tokenizer, tableDtype: 'bf16', seed: 3, device: 'cuda' });
    const pager = paged.usePager({ tier: 'host', cacheBytes: 64 * 1024, pageRows: 4, eviction: 'lfu' })!;
    expect(pager.device).toBe('cuda');
    const r = rng(8);
    for (let b = 0; b < 10; b++) {
      const ids = Int32Array.from({ length: 2 * 16 }, () => Math.floor(r() * 5000));
      const hidden = Float32Array.from({ length: 2 * 16 * 2 * 32 }, () => r() * 2 - 1);
      const want = whole.forward(hidden, ids, [2, 16]);
      const got = b % 2 ? paged.forward(hidden, ids, [2, 16], { ticket: paged.prefetch(ids, [2, 16]) }) : await paged.forwardAsync(hidden, ids, [2, 16]);
      expect(bits(got.output).equals(bits(want.output))).toBe(true);
    }
    const s = paged.pagerStats();
    expect(s.evictions).toBeGreaterThan(0);
    expect(s.ticketsInFlight).toBe(0);
  });

  it("V4.1's fp8 tables through device caches equal the tables uploaded whole", () => {
    const ckpt = path.join(dir, 'v41');
    writeSyntheticV41Checkpoint(ckpt, { rowsScale: 2e-5, hiddenSize: 64, hcMult: 4, seed: 5 });
    const whole = DeepseekV41EngramModel.fromCheckpoint(ckpt, { device: 'cuda' });
    const r = rng(9);
    // The table pinned in host memory, then the file read through pinned staging.
    for (const tier of ['host', 'file'] as const) {
      const paged = DeepseekV41EngramModel.fromCheckpoint(ckpt, { device: 'cuda', table: { tier, cacheBytes: 2 ** 20, pageRows: 1 } });
      for (let b = 0; b < 4; b++) {
        const ids = Int32Array.from({ length: 16 }, () => Math.floor(r() * 128_000));
        const streams = new Map([1, 14].map((id) => [id, Float32Array.from({ length: 16 * 4 * 64 }, () => r() * 2 - 1)]));
        const ticket = paged.prefetch(ids, [2, 8]);
        const got = paged.forward(streams, ids, [2, 8], { ticket });
        const want = whole.forward(streams, ids, [2, 8]);
        for (const id of [1, 14]) expect(bits(got.outputs.get(id)!.output).equals(bits(want.outputs.get(id)!.output))).toBe(true);
      }
    }
  });

  it("V4.1's tables split over DeepSeek's model{rank}-mp3 rank files: uploaded whole and through device caches, the same bits", () => {
    const ckpt = path.join(dir, 'v41-mp3');
    writeSyntheticV41Checkpoint(ckpt, { rowsScale: 2e-5, hiddenSize: 64, hcMult: 4, seed: 5, mp: 3 });
    const cpu = DeepseekV41EngramModel.fromCheckpoint(ckpt, { device: 'cpu' });
    expect(cpu.layers.get(1)!.table.parts.length).toBe(3);
    const r = rng(10);
    const models = [
      DeepseekV41EngramModel.fromCheckpoint(ckpt, { device: 'cuda' }),
      ...(['host', 'file'] as const).map((tier) => DeepseekV41EngramModel.fromCheckpoint(ckpt, { device: 'cuda', table: { tier, cacheBytes: 2 ** 20, pageRows: 7 } })),
    ];
    for (let b = 0; b < 3; b++) {
      const ids = Int32Array.from({ length: 16 }, () => Math.floor(r() * 128_000));
      const streams = new Map([1, 14].map((id) => [id, Float32Array.from({ length: 16 * 4 * 64 }, () => r() * 2 - 1)]));
      const want = cpu.forward(streams, ids, [2, 8]);
      for (const m of models) {
        const got = m.forward(streams, ids, [2, 8]);
        for (const id of [1, 14]) expect(Math.max(...got.outputs.get(id)!.output.map((v, i) => Math.abs(v - want.outputs.get(id)!.output[i]) / (1 + Math.abs(want.outputs.get(id)!.output[i]))))).toBeLessThan(1e-4);
      }
      // the device paths agree bit for bit with each other
      for (const m of models.slice(1)) {
        const a = m.forward(streams, ids, [2, 8]), w = models[0].forward(streams, ids, [2, 8]);
        for (const id of [1, 14]) expect(bits(a.outputs.get(id)!.output).equals(bits(w.outputs.get(id)!.output))).toBe(true);
      }
    }
  });
});
