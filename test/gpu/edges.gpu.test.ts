// GPU suite at the edges the first-draft tests never reached: a projection over the old
// 65535-tile grid limit, a table of more than 2^31 elements read with int64 row ids, an
// fp8 table in the paper layer, 50 async calls in flight on one layer, and a device
// cache far smaller than its table over many batches. Each compares the CUDA backend with
// the CPU backend: row ids exactly, floats within 1e-4 relative. ENGRAM_GPU_SMALL=1 (the
// GPU kit under compute-sanitizer) runs the same checks at sizes a sanitizer finishes.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import {
  CompressedTokenizer,
  DeepseekV41Engram,
  DeepseekV41EngramModel,
  devices,
  Engram,
  readSafetensors,
  writeSafetensors,
  writeSyntheticV41Checkpoint,
  type Tensor,
} from '../../src/index.js';
import { gpuVisible } from '../helpers/gpu.js';
import { maxRelError } from '../helpers/forward-small.js';
import { rng } from '../helpers/random.js';

const visible = gpuVisible('edge-case');
const small = process.env.ENGRAM_GPU_SMALL === '1';
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'engram-gpu-edges-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
const bits = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

describe.skipIf(!visible)('CUDA backend at the edges', () => {
  const tokenizer = CompressedTokenizer.deepseekV3();

  it('a projection over 65535 row tiles (4,194,368 tokens) equals the CPU backend', () => {
    // hidden 8, hc 1, one 2-gram head of 8 channels: a tiny layer, a very tall GEMM.
    const config = { layerId: 1, layerIds: [1], hiddenSize: 8, hcMult: 1, nEmbedPerNgram: 8, nHeadPerNgram: 1, maxNgramSize: 2, engramVocabSize: [1009], kernelSize: 2 };
    const cpu = new Engram(config, { tokenizer, seed: 11, device: 'cpu' });
    const gpu = new Engram(config, { tokenizer, hashMapping: cpu.hashMapping, init: 'none', device: 'cuda' });
    gpu.loadStateDict(cpu.stateDict());
    const tokens = small ? 4096 : 65535 * 64 + 128;
    const r = rng(21);
    const ids = Int32Array.from({ length: tokens }, () => Math.floor(r() * 128_000));
    const hidden = Float32Array.from({ length: tokens * 8 }, () => r() * 2 - 1);
    const want = cpu.forward(hidden, ids, [1, tokens]).output;
    const got = gpu.forward(hidden, ids, [1, tokens]).output;
    expect(maxRelError(got, want)).toBeLessThan(1e-4);
    // the last tile row, past the old limit, was written
    expect(maxRelError(got.subarray(got.length - 1024), want.subarray(want.length - 1024))).toBeLessThan(1e-4);
  }, 600_000);

  it('a V4.1 table of more than 2^31 elements (a sparse file), rows near its end by int64 ids', () => {
    const D = 32, hc = 2, headDim = 256;
    const rows = small ? 4096 : 2 ** 31 / headDim + 4096; // 2^31 + 1 Mi fp8 codes
    const file = path.join(dir, 'big-v41.safetensors');
    const r = rng(22);
    // wkv [(hc + 1) * D, headDim] fp8 codes (finite: e4m3 codes below 0x78 are), 32x32 scales of 2^0
    const codes = (n: number) => Uint8Array.from({ length: n }, () => (Math.floor(r() * 0x70) | (r() < 0.5 ? 0x80 : 0)));
    writeSafetensors(file, {
      'embed.weight': { dtype: 'F8_E4M3', shape: [rows, headDim], hole: true },
      'embed.scale': { dtype: 'F8_E8M0', shape: [rows, headDim / 32], hole: true },
      'wkv.weight': { dtype: 'F8_E4M3', shape: [(hc + 1) * D, headDim], data: codes((hc + 1) * D * headDim) },
      'wkv.scale': { dtype: 'F8_E8M0', shape: [((hc + 1) * D) / 32, headDim / 32], data: new Uint8Array((((hc + 1) * D) / 32) * (headDim / 32)).fill(127) },
      q_weight: { dtype: 'F32', shape: [hc, D], data: Float32Array.from({ length: hc * D }, () => r() + 0.5) },
      k_weight: { dtype: 'F32', shape: [hc, D], data: Float32Array.from({ length: hc * D }, () => r() + 0.5) },
    });
    // Real rows (codes and scales) at both ends and past 2^31 elements.
    const st0 = readSafetensors(file);
    const picked = [0, 1, rows - 3, rows - 2, rows - 1];
    const fd = fs.openSync(file, 'r+');
    for (const row of picked) {
      fs.writeSync(fd, codes(headDim), 0, headDim, st0.tensors['embed.weight'].fileOffset! + row * headDim);
      fs.writeSync(fd, new Uint8Array(headDim / 32).fill(126 + (row % 3)), 0, headDim / 32, st0.tensors['embed.scale'].fileOffset! + row * (headDim / 32));
    }
    fs.closeSync(fd);
    const dict = readSafetensors(file).tensors as Record<string, Tensor>;
    const config = { hiddenSize: D, hcMult: hc, maxNgramSize: 2, nHeads: 1, headDim, numEmbeddings: rows, rmsNormEps: 1e-20 };
    const cpu = new DeepseekV41Engram(config, { device: 'cpu' });
    const gpu = new DeepseekV41Engram(config, { device: 'cuda' });
    cpu.loadStateDict(dict);
    gpu.loadStateDict(dict);
    const S = 12;
    const rowIds = BigInt64Array.from({ length: S }, (_, i) => BigInt(picked[i % picked.length]));
    const streams = Float32Array.from({ length: S * hc * D }, () => r() * 2 - 1);
    const want = cpu.forwardRows(streams, rowIds, [1, S], { returnRows: true });
    const got = gpu.forwardRows(streams, rowIds, [1, S], { returnRows: true });
    expect(want.rows!.some((v) => v !== 0)).toBe(true);
    expect(bits(got.rows!).equals(bits(want.rows!))).toBe(true); // dequantised rows: exact
    expect(maxRelError(got.output, want.output)).toBeLessThan(1e-4);
    // int32 ids give the same bits where they can address the rows
    if (rows < 2 ** 31) {
      const again = gpu.forwardRows(streams, Int32Array.from(rowIds, Number), [1, S]);
      expect(bits(again.output).equals(bits(got.output))).toBe(true);
    }
  }, 600_000);

  it('the paper layer over an fp8 table (e4m3 + UE8M0) equals the CPU backend', () => {
    const config = { layerId: 1, layerIds: [1], hiddenSize: 32, hcMult: 2, nEmbedPerNgram: 64, nHeadPerNgram: 2, maxNgramSize: 3, engramVocabSize: [3001, 3001], kernelSize: 4 };
    const cpu = new Engram(config, { tokenizer, tableDtype: 'f8e4m3', seed: 12, device: 'cpu' });
    const gpu = new Engram(config, { tokenizer, hashMapping: cpu.hashMapping, init: 'none', tableDtype: 'f8e4m3', device: 'cuda' });
    gpu.loadStateDict(cpu.stateDict());
    const r = rng(23);
    const ids = Int32Array.from({ length: 4 * 64 }, () => Math.floor(r() * 128_000));
    const hidden = Float32Array.from({ length: 4 * 64 * 2 * 32 }, () => r() * 2 - 1);
    const want = cpu.forward(hidden, ids, [4, 64], { returnEmbeddings: true });
    const got = gpu.forward(hidden, ids, [4, 64], { returnEmbeddings: true });
    expect(bits(got.embeddings!).equals(bits(want.embeddings!))).toBe(true); // decoded rows: exact
    expect(maxRelError(got.output, want.output)).toBeLessThan(1e-4);
    expect(maxRelError(got.gates, want.gates)).toBeLessThan(1e-4);
  });

  it('50 forwardAsync calls in flight on one layer each give the bits of the sync call', async () => {
    const config = { layerId: 1, layerIds: [1], hiddenSize: 32, hcMult: 2, nEmbedPerNgram: 64, nHeadPerNgram: 2, maxNgramSize: 3, engramVocabSize: [3001, 3001], kernelSize: 4 };
    const layer = new Engram(config, { tokenizer, tableDtype: 'bf16', seed: 13, device: 'cuda' });
    const r = rng(24);
    const calls = Array.from({ length: 50 }, (_, i) => {
      const T = 8 + (i % 7) * 9;
      return {
        T,
        ids: Int32Array.from({ length: 2 * T }, () => Math.floor(r() * 128_000)),
        hidden: Float32Array.from({ length: 2 * T * 2 * 32 }, () => r() * 2 - 1),
      };
    });
    const want = calls.map((c) => layer.forward(c.hidden, c.ids, [2, c.T]).output);
    const got = await Promise.all(calls.map((c) => layer.forwardAsync(c.hidden, c.ids, [2, c.T])));
    got.forEach((g, i) => expect(bits(g.output).equals(bits(want[i])), `call ${i}`).toBe(true));
  });

  it('the first async forward after a load uploads its table on a worker thread: the event loop keeps turning', async () => {
    const D = 32, hc = 2, headDim = 256;
    const rows = small ? 4096 : Math.floor(2 ** 30 / (headDim + 8)); // a 1 GiB fp8 table (a hole: no disk, no init)
    const file = path.join(dir, 'upload-v41.safetensors');
    const r = rng(26);
    writeSafetensors(file, {
      'embed.weight': { dtype: 'F8_E4M3', shape: [rows, headDim], hole: true },
      'embed.scale': { dtype: 'F8_E8M0', shape: [rows, headDim / 32], hole: true },
      'wkv.weight': { dtype: 'F8_E4M3', shape: [(hc + 1) * D, headDim], data: new Uint8Array((hc + 1) * D * headDim).fill(0x38) },
      'wkv.scale': { dtype: 'F8_E8M0', shape: [((hc + 1) * D) / 32, headDim / 32], data: new Uint8Array((((hc + 1) * D) / 32) * (headDim / 32)).fill(127) },
      q_weight: { dtype: 'F32', shape: [hc, D], data: new Float32Array(hc * D).fill(1) },
      k_weight: { dtype: 'F32', shape: [hc, D], data: new Float32Array(hc * D).fill(1) },
    });
    const config = { hiddenSize: D, hcMult: hc, maxNgramSize: 2, nHeads: 1, headDim, numEmbeddings: rows, rmsNormEps: 1e-20 };
    const streams = Float32Array.from({ length: 4 * hc * D }, () => r() * 2 - 1);
    const ids = Int32Array.of(0, 5, rows - 1, 7);
    // The sync call with its upload, for scale.
    const syncLayer = new DeepseekV41Engram(config, { device: 'cuda' });
    syncLayer.loadStateDict(readSafetensors(file).tensors as Record<string, Tensor>);
    const t0 = performance.now();
    const want = syncLayer.forwardRows(streams, ids, [1, 4]).output;
    const syncMs = performance.now() - t0;
    // The async call on a fresh layer: the longest the loop waits between two turns.
    const layer = new DeepseekV41Engram(config, { device: 'cuda' });
    layer.loadStateDict(readSafetensors(file).tensors as Record<string, Tensor>);
    let last = performance.now(), longest = 0, done = false;
    const turn = () => {
      const now = performance.now();
      longest = Math.max(longest, now - last);
      last = now;
      if (!done) setImmediate(turn);
    };
    setImmediate(turn);
    const got = await layer.forwardRowsAsync(streams, ids, [1, 4]);
    done = true;
    expect(bits(got.output).equals(bits(want))).toBe(true);
    if (!small) expect(longest, `sync call ${syncMs.toFixed(0)} ms, longest loop stall ${longest.toFixed(0)} ms`).toBeLessThan(syncMs / 2);
  }, 600_000);

  it("a device cache of 2,048 rows (about 1/20 of V4.1's tables) over 40 batches: the bits of the tables uploaded whole, with evictions", () => {
    const ckpt = path.join(dir, 'v41-cache');
    writeSyntheticV41Checkpoint(ckpt, { rowsScale: 1e-4, hiddenSize: 64, hcMult: 4, seed: 6 });
    const whole = DeepseekV41EngramModel.fromCheckpoint(ckpt, { device: 'cuda' });
    // 32 tokens x 24 rows per batch: two batches' rows fit (one prefetched, one in use).
    const cacheBytes = 2048 * (256 + 8);
    expect(whole.layers.get(1)!.table.byteLength).toBeGreaterThan(16 * cacheBytes);
    const r = rng(25);
    for (const tier of ['host', 'file'] as const) {
      const paged = DeepseekV41EngramModel.fromCheckpoint(ckpt, { device: 'cuda', table: { tier, cacheBytes, pageRows: 1 } });
      for (let b = 0; b < (small ? 4 : 40); b++) {
        const ids = Int32Array.from({ length: 32 }, () => Math.floor(r() * 128_000));
        const streams = new Map([1, 14].map((id) => [id, Float32Array.from({ length: 32 * 4 * 64 }, () => r() * 2 - 1)]));
        const ticket = b % 2 ? paged.prefetch(ids, [4, 8]) : undefined;
        const got = paged.forward(streams, ids, [4, 8], { ticket });
        const want = whole.forward(streams, ids, [4, 8]);
        for (const id of [1, 14]) expect(bits(got.outputs.get(id)!.output).equals(bits(want.outputs.get(id)!.output)), `${tier} batch ${b} layer ${id}`).toBe(true);
      }
      const stats = paged.layers.get(1)!.pagerStats();
      if (!small) expect(stats.evictions).toBeGreaterThan(0);
      expect(stats.ticketsInFlight).toBe(0);
    }
  }, 600_000);
});

// Two devices: a device cache on one GPU and weights on another must be refused, never read
// across devices (an illegal address would poison the process's CUDA context). The public
// API always puts a layer's pager on the layer's device, so the test swaps the pagers of two
// layers on different GPUs to reach the addon's own check.
describe.skipIf(!visible || devices().length < 2)('CUDA backend on two devices', () => {
  it("a pager's device cache on GPU 1 with the layer's weights on GPU 0 is refused by name", () => {
    const tokenizer = CompressedTokenizer.deepseekV3();
    const config = { layerId: 1, layerIds: [1], hiddenSize: 32, hcMult: 2, nEmbedPerNgram: 64, nHeadPerNgram: 2, maxNgramSize: 3, engramVocabSize: [3001, 3001], kernelSize: 4 };
    const onZero = new Engram(config, { tokenizer, tableDtype: 'bf16', seed: 14, device: 'cuda', deviceIndex: 0 });
    const onOne = new Engram(config, { tokenizer, hashMapping: onZero.hashMapping, init: 'none', tableDtype: 'bf16', device: 'cuda', deviceIndex: 1 });
    onOne.loadStateDict(onZero.stateDict());
    onZero.usePager({ tier: 'host', cacheBytes: 1 << 20, pageRows: 1 });
    onOne.usePager({ tier: 'host', cacheBytes: 1 << 20, pageRows: 1 });
    const r = rng(27);
    const ids = Int32Array.from({ length: 16 }, () => Math.floor(r() * 128_000));
    const hidden = Float32Array.from({ length: 16 * 2 * 32 }, () => r() * 2 - 1);
    const want = onZero.forward(hidden, ids, [1, 16]).output;
    (onZero as unknown as { tablePager: unknown }).tablePager = (onOne as unknown as { tablePager: unknown }).tablePager;
    expect(() => onZero.forward(hidden, ids, [1, 16])).toThrow(/device cache is on CUDA device 1 but the layer's weights are on device 0/);
    // the process's CUDA context is intact: the layer on GPU 1 still runs and agrees
    expect(maxRelError(onOne.forward(hidden, ids, [1, 16]).output, want)).toBeLessThan(1e-4);
  });
});
