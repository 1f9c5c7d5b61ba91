// DeepSeek's own checkpoint layouts: convert.py's model{rank}-mp{mp}.safetensors (tables
// split by rows, ceil(rows / mp) per rank, the last rank padded; every other Engram tensor
// copied whole into every rank) and the Hugging Face index with or without the `model.`
// prefix and with `weight_scale_inv`: each gives the bits of the index layout.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { DeepseekV41EngramModel, findEngramTensors, writeSafetensors, writeSyntheticV41Checkpoint, type Tensor } from '../src/index.js';
import { inspectV41 } from '../src/cli/v41.js';
import { rng } from './helpers/random.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'engram-v41-layouts-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));
const dir = path.join(root, 'index');
const config = writeSyntheticV41Checkpoint(dir, { rowsScale: 2e-5, hiddenSize: 64, hcMult: 4, seed: 9 });
const bits = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
const bytesOf = (t: Tensor) => new Uint8Array(t.data.buffer as ArrayBuffer, t.data.byteOffset, t.data.byteLength);

/** convert.py's layout from the index layout's tensors. */
function writeModelParallel(out: string, mp: number, rename: (name: string) => string = (n) => n): string {
  fs.mkdirSync(out, { recursive: true });
  for (const f of ['config.json', 'tokenizer.json']) fs.copyFileSync(path.join(dir, f), path.join(out, f));
  const { tensors } = findEngramTensors(dir);
  for (let rank = 0; rank < mp; rank++) {
    const shard: Record<string, Tensor> = {};
    for (const [name, t] of Object.entries(tensors)) {
      if (!/embed\.(weight|scale)$/.test(name)) {
        shard[rename(name)] = { dtype: t.dtype, shape: t.shape, data: bytesOf(t) }; // whole, in every rank
        continue;
      }
      const rows = t.shape[0], per = Math.ceil(rows / mp), rowBytes = t.data.byteLength / rows;
      const from = Math.min(rows, rank * per), to = Math.min(rows, from + per);
      const part = new Uint8Array(per * rowBytes).fill(name.endsWith('scale') ? 1 : 0); // pad: weight 0, scale code 1
      part.set(bytesOf(t).subarray(from * rowBytes, to * rowBytes));
      shard[rename(name)] = { dtype: t.dtype, shape: [per, ...t.shape.slice(1)], data: part };
    }
    writeSafetensors(path.join(out, `model${rank}-mp${mp}.safetensors`), shard);
  }
  return out;
}

describe("DeepSeek-V4.1 checkpoint layouts", () => {
  const r = rng(41);
  const ids = Int32Array.from({ length: 16 }, () => Math.floor(r() * 128_000));
  const mask = Uint8Array.from({ length: 16 }, (_, i) => (i === 6 ? 0 : 1));
  const streams = new Map([1, 14].map((id) => [id, Float32Array.from({ length: 16 * 4 * 64 }, () => r() * 2 - 1)]));
  const want = DeepseekV41EngramModel.fromCheckpoint(dir).forward(streams, ids, [2, 8], { tokenMask: mask });

  it('model{rank}-mp{mp} for mp 1, 2, 3, 4 and 8 (uneven tables: the last rank padded) gives the bits of the index layout, in memory and through the file tier', () => {
    expect(config.numEmbeddings.some((rows) => [3, 4, 8].some((mp) => rows % mp !== 0))).toBe(true);
    for (const mp of [1, 2, 3, 4, 8]) {
      const ckpt = writeModelParallel(path.join(root, `mp${mp}`), mp);
      expect(findEngramTensors(ckpt).layout).toEqual({ kind: 'model-parallel', mp });
      for (const table of [undefined, { tier: 'file' as const, cacheBytes: 1 << 20, pageRows: 3 }]) {
        const model = DeepseekV41EngramModel.fromCheckpoint(ckpt, { table });
        config.layerIds.forEach((id, i) => {
          const t = model.layers.get(id)!.table;
          expect(t.rows).toBe(config.numEmbeddings[i]); // the pad rows are not part of the table
          expect(t.parts.length).toBe(mp === 1 ? 1 : Math.ceil(config.numEmbeddings[i] / Math.ceil(config.numEmbeddings[i] / mp)));
        });
        const got = model.forward(streams, ids, [2, 8], { tokenMask: mask });
        for (const id of [1, 14]) expect(bits(got.outputs.get(id)!.output).equals(bits(want.outputs.get(id)!.output)), `mp ${mp} ${table?.tier ?? 'mapped'} layer ${id}`).toBe(true);
      }
    }
  });

  it("the index layout with the release's 'model.' prefix and 'weight_scale_inv' names, and rank files named so, give the same bits", () => {
    const hf = path.join(root, 'hf-names');
    fs.mkdirSync(hf);
    for (const f of ['config.json', 'tokenizer.json']) fs.copyFileSync(path.join(dir, f), path.join(hf, f));
    const { tensors } = findEngramTensors(dir);
    const rename = (name: string) => `model.${name.replace(/\.scale$/, '.weight_scale_inv')}`;
    const renamed = Object.fromEntries(Object.entries(tensors).map(([n, t]) => [rename(n), { dtype: t.dtype, shape: t.shape, data: bytesOf(t) } as Tensor]));
    writeSafetensors(path.join(hf, 'model-00047-of-00048.safetensors'), renamed);
    fs.writeFileSync(path.join(hf, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: Object.fromEntries(Object.keys(renamed).map((n) => [n, 'model-00047-of-00048.safetensors'])) }));
    for (const ckpt of [hf, writeModelParallel(path.join(root, 'mp3-hf-names'), 3, rename)]) {
      const got = DeepseekV41EngramModel.fromCheckpoint(ckpt).forward(streams, ids, [2, 8], { tokenMask: mask });
      for (const id of [1, 14]) expect(bits(got.outputs.get(id)!.output).equals(bits(want.outputs.get(id)!.output)), ckpt).toBe(true);
    }
  });

  it('a missing rank file, ranks of different sizes, or mixed degrees are refused naming the file', () => {
    const missing = writeModelParallel(path.join(root, 'missing'), 4);
    fs.rmSync(path.join(missing, 'model2-mp4.safetensors'));
    expect(() => DeepseekV41EngramModel.fromCheckpoint(missing)).toThrow(/checkpoint rank file '.*model2-mp4.safetensors' is missing \(4 ranks: model0-mp4 to model3-mp4\)/);
    const uneven = writeModelParallel(path.join(root, 'uneven'), 3);
    // rank 1 with one row fewer of layer 1's table
    const { tensors } = findEngramTensors(uneven);
    const rank1 = path.join(uneven, 'model1-mp3.safetensors');
    const shard: Record<string, Tensor> = {};
    for (const [name, t] of Object.entries(tensors)) {
      const part = t.rowParts?.[1];
      if (part === undefined) {
        shard[name] = { dtype: t.dtype, shape: t.shape, data: bytesOf(t) };
        continue;
      }
      const shorter = name === 'layers.1.engram.embed.weight' ? part.shape[0] - 1 : part.shape[0];
      const rowBytes = part.data.byteLength / part.shape[0];
      shard[name] = { dtype: t.dtype, shape: [shorter, ...part.shape.slice(1)], data: new Uint8Array(part.data.buffer as ArrayBuffer, part.data.byteOffset, shorter * rowBytes).slice() };
    }
    writeSafetensors(rank1, shard);
    expect(() => DeepseekV41EngramModel.fromCheckpoint(uneven)).toThrow(/tensor 'layers.1.engram.embed.weight' is split by rows over 3 rank files of different sizes: '.*model1-mp3.safetensors' holds \d+ rows/);
    fs.copyFileSync(path.join(root, 'mp2', 'model0-mp2.safetensors'), path.join(uneven, 'model0-mp2.safetensors'));
    expect(() => DeepseekV41EngramModel.fromCheckpoint(uneven)).toThrow(/mixes model-parallel degrees/);
  });

  it('synth --mp writes DeepSeek\'s layout (nested config, padded last rank) and inspect names it', () => {
    const ckpt = path.join(root, 'synth-mp3');
    const c = writeSyntheticV41Checkpoint(ckpt, { rowsScale: 2e-5, hiddenSize: 64, hcMult: 4, seed: 4, mp: 3 });
    const cfg = JSON.parse(fs.readFileSync(path.join(ckpt, 'config.json'), 'utf8'));
    expect(cfg.architectures).toEqual(['DeepseekV41ForCausalLM']);
    expect(cfg.model_type).toBe('deepseek_v41');
    expect(cfg.quantization_config).toMatchObject({ scale_fmt: 'ue8m0', weight_block_size: [32, 32] });
    expect(cfg.text_config.engram_num_embeddings).toEqual(c.numEmbeddings);
    expect(fs.readdirSync(ckpt).filter((f) => f.endsWith('.safetensors')).sort()).toEqual(['model0-mp3.safetensors', 'model1-mp3.safetensors', 'model2-mp3.safetensors']);
    const { tensors } = findEngramTensors(ckpt);
    c.layerIds.forEach((id, i) => {
      const per = Math.ceil(c.numEmbeddings[i] / 3);
      const t = tensors[`layers.${id}.engram.embed.scale`];
      expect(t.rowParts!.map((p) => p.shape[0])).toEqual([per, per, per]);
      const last = t.rowParts![2];
      const pad = 3 * per - c.numEmbeddings[i];
      const codes = new Uint8Array(last.data.buffer as ArrayBuffer, last.data.byteOffset, last.data.byteLength);
      expect(Array.from(codes.subarray(codes.length - pad * 8)).every((v) => v === 1)).toBe(true); // pad scale rows: code 1
      expect(tensors[`layers.${id}.engram.wkv.weight`].rowParts!.length).toBe(3); // copied into every rank
    });
    const model = DeepseekV41EngramModel.fromCheckpoint(ckpt);
    expect(model.forward(streams, ids, [2, 8]).outputs.get(14)!.output.every(Number.isFinite)).toBe(true);
    const log: string[] = [];
    const orig = console.log;
    console.log = (s: string) => log.push(String(s));
    try {
      expect(inspectV41(ckpt, true)).toBe(0);
    } finally {
      console.log = orig;
    }
    expect(JSON.parse(log.at(-1)!).layout).toMatchObject({ kind: 'model-parallel', mp: 3, description: "DeepSeek's model-parallel shards model{0..2}-mp3.safetensors" });
  });
});
