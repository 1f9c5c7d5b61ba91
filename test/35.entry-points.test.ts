// Both layer kinds take both inputs (token ids: they hash; row ids: already hashed), and
// both models run one layer or all of them: every entry point gives the bits of the others.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { CompressedTokenizer, DeepseekV41Engram, DeepseekV41EngramModel, Engram, EngramModel, findEngramTensors, writeSyntheticV41Checkpoint } from '../src/index.js';
import { rng } from './helpers/random.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'engram-entry-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
const bits = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
const tokenizer = CompressedTokenizer.deepseekV3();
const config = { layerIds: [1, 5], hiddenSize: 32, hcMult: 2, nEmbedPerNgram: 64, nHeadPerNgram: 2, maxNgramSize: 3, engramVocabSize: [3001, 3001], kernelSize: 4 };

describe("the paper's layer and model", () => {
  const r = rng(31);
  const ids = Int32Array.from({ length: 2 * 12 }, () => Math.floor(r() * 128_000));
  const hidden = (seed: number) => {
    const g = rng(seed);
    return Float32Array.from({ length: 2 * 12 * 2 * 32 }, () => g() * 2 - 1);
  };

  it('Engram.forwardRows on the rows forward hashes gives its bits (sync and async)', async () => {
    const layer = new Engram({ ...config, layerId: 1 }, { tokenizer, tableDtype: 'bf16', seed: 2 });
    const h = hidden(1);
    const want = layer.forward(h, ids, [2, 12]);
    const rows = layer.hashMapping.hashRows(ids, [2, 12], { layers: [1] }).rowIds;
    const got = layer.forwardRows(h, rows, [2, 12]);
    expect(bits(got.output).equals(bits(want.output))).toBe(true);
    expect(bits(got.gates).equals(bits(want.gates))).toBe(true);
    const again = await layer.forwardRowsAsync(h, BigInt64Array.from(rows, BigInt), [2, 12]);
    expect(bits(again.output).equals(bits(want.output))).toBe(true);
    expect(() => layer.forwardRows(h, rows, [2, 12], { state: layer.newState(2) } as never)).toThrow(/options.state is not taken by forwardRows/);
    expect(() => layer.forwardRows(h, rows.subarray(1), [2, 12])).toThrow(/rowIds has 95 ids but \[2, 12, 4\] needs 96/);
  });

  it('EngramModel.forward runs every layer as forwardLayer does, across chunks with one state', () => {
    const model = new EngramModel(config, { tokenizer, seed: 3 });
    const byLayer = new Map([[1, hidden(2)], [5, hidden(3)]]);
    const whole = model.newState(2);
    const perLayer = model.newState(2);
    for (const chunk of [ids.subarray(0, 12), ids.subarray(12)]) {
      const shape: [number, number] = [2, 6];
      const h = (id: number) => byLayer.get(id)!.subarray(0, 2 * 6 * 2 * 32);
      const all = model.forward(new Map([[1, h(1)], [5, h(5)]]), chunk, shape, { state: whole });
      const rows = model.hash(chunk, shape, { state: perLayer });
      for (const id of [1, 5]) {
        const one = model.forwardLayer(id, h(id), rows, { state: perLayer });
        expect(bits(all.get(id)!.output).equals(bits(one.output)), `layer ${id}`).toBe(true);
      }
    }
    expect(() => model.forward(new Map([[7, hidden(4)]]), ids, [2, 12])).toThrow(/layerId 7 is not one of the model's layers/);
  });
});

describe("DeepSeek-V4.1's layer and model", () => {
  it('a model layer takes token ids itself; forwardLayer and forward agree bit for bit', async () => {
    const ckpt = path.join(dir, 'v41');
    writeSyntheticV41Checkpoint(ckpt, { rowsScale: 2e-5, hiddenSize: 64, hcMult: 4, seed: 7 });
    const model = DeepseekV41EngramModel.fromCheckpoint(ckpt);
    const r = rng(32);
    const ids = Int32Array.from({ length: 16 }, () => Math.floor(r() * 128_000));
    const mask = Uint8Array.from({ length: 16 }, (_, i) => (i === 5 ? 0 : 1));
    const streams = new Map([1, 14].map((id) => [id, Float32Array.from({ length: 16 * 4 * 64 }, () => r() * 2 - 1)]));
    const all = model.forward(streams, ids, [2, 8], { tokenMask: mask });
    for (const id of [1, 14]) {
      const layer = model.layers.get(id)!;
      const own = layer.forward(streams.get(id)!, ids, [2, 8], { tokenMask: mask });
      expect(bits(own.output).equals(bits(all.outputs.get(id)!.output)), `layer ${id}`).toBe(true);
      expect(Array.from(own.history)).toEqual(Array.from(all.history));
      const viaModel = model.forwardLayer(id, streams.get(id)!, ids, [2, 8], { tokenMask: mask });
      expect(bits(viaModel.output).equals(bits(all.outputs.get(id)!.output))).toBe(true);
      const async = await layer.forwardAsync(streams.get(id)!, ids, [2, 8], { tokenMask: mask });
      expect(bits(async.output).equals(bits(own.output))).toBe(true);
    }
    expect(() => model.forwardLayer(3, streams.get(1)!, ids, [2, 8])).toThrow(/layerId 3 is not one of the model's layers/);
    const bare = new DeepseekV41Engram({ hiddenSize: 64, hcMult: 4, numEmbeddings: 1000 });
    expect(() => bare.forward(new Float32Array(4 * 64), [1], [1, 1])).toThrow(/no hashing to take token ids/);
  });
});

describe('weights swapped while forwards run (both Engram layers)', () => {
  it('loadStateDict during 10 async forwards: each result is entirely the old weights or entirely the new ones', async () => {
    const tokenizerRef = CompressedTokenizer.deepseekV3();
    const cfg = { ...config, layerId: 1 };
    const oldLayer = new Engram(cfg, { tokenizer: tokenizerRef, seed: 21 });
    const newLayer = new Engram(cfg, { tokenizer: tokenizerRef, seed: 22 });
    const r = rng(51);
    const ids = Int32Array.from({ length: 2 * 12 }, () => Math.floor(r() * 128_000));
    const hidden = Float32Array.from({ length: 2 * 12 * 2 * 32 }, () => r() * 2 - 1);
    const [wantOld, wantNew] = [oldLayer, newLayer].map((l) => bits(l.forward(hidden, ids, [2, 12]).output));
    const layer = new Engram(cfg, { tokenizer: tokenizerRef, seed: 21 });
    const calls = Array.from({ length: 10 }, () => layer.forwardAsync(hidden, ids, [2, 12]));
    layer.loadStateDict(newLayer.stateDict());
    for (const got of await Promise.all(calls)) expect(bits(got.output).equals(wantOld) || bits(got.output).equals(wantNew)).toBe(true);
    expect(bits(layer.forward(hidden, ids, [2, 12]).output).equals(wantNew)).toBe(true);

    const ckpt = path.join(dir, 'v41-swap');
    writeSyntheticV41Checkpoint(ckpt, { rowsScale: 2e-5, hiddenSize: 64, hcMult: 4, seed: 8, layerIds: [1] });
    const other = path.join(dir, 'v41-swap-other');
    writeSyntheticV41Checkpoint(other, { rowsScale: 2e-5, hiddenSize: 64, hcMult: 4, seed: 9, layerIds: [1] });
    const v41 = DeepseekV41EngramModel.fromCheckpoint(ckpt).layers.get(1)!;
    const next = DeepseekV41EngramModel.fromCheckpoint(other).layers.get(1)!;
    const rows = Int32Array.from({ length: 8 * v41.rowsPerToken }, (_, i) => (i * 37) % v41.table.rows);
    const streams = Float32Array.from({ length: 8 * 4 * 64 }, () => r() * 2 - 1);
    const v41Old = bits(v41.forwardRows(streams, rows, [1, 8]).output);
    const v41New = bits(next.forwardRows(streams, rows, [1, 8]).output);
    const v41Calls = Array.from({ length: 10 }, () => v41.forwardRowsAsync(streams, rows, [1, 8]));
    v41.loadStateDict(findEngramTensors(other).tensors); // while the calls run
    for (const got of await Promise.all(v41Calls)) expect(bits(got.output).equals(v41Old) || bits(got.output).equals(v41New)).toBe(true);
  });
});
