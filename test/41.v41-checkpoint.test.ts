import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { CompressedTokenizer, DeepseekV41Engram, DeepseekV41EngramModel, findEngramTensors, readSafetensors, writeSafetensors, writeSyntheticV41Checkpoint, type Tensor } from '../src/index.js';
import { randInt, rng } from './helpers/random.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'engram-v41-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));
const dir = path.join(root, 'ckpt');
const config = writeSyntheticV41Checkpoint(dir, { rowsScale: 1e-4, hiddenSize: 64, hcMult: 4, seed: 3 });
const same = (a: Float32Array, b: Float32Array) => Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0;

describe("DeepSeek-V4.1 checkpoints (synthetic, in the released layout)", () => {
  const model = DeepseekV41EngramModel.fromCheckpoint(dir);
  const B = 2;
  const S = 11;
  const r = rng(17);
  const ids = Int32Array.from({ length: B * S }, () => randInt(r, 0, 128_000));
  const mask = Uint8Array.from({ length: B * S }, (_, i) => (i % 7 === 3 ? 0 : 1));
  const streams = new Map([1, 14].map((id) => [id, Float32Array.from({ length: B * S * 4 * 64 }, () => r() * 4 - 2)]));

  it('reads the geometry from config.json and maps the tables', () => {
    expect(config.numEmbeddings).toEqual([1, 14].map((id) => model.hashMapping.tableRows(id)));
    expect(model.layers.get(14)!.table.rows).toBe(config.numEmbeddings[1]);
    expect(model.layers.get(1)!.table.region.buffer.byteLength).toBe(fs.statSync(model.files[0]).size);
  });

  it('hashing + gather + layer through fromCheckpoint equals the same from the parts', () => {
    const { outputs } = model.forward(streams, ids, [B, S], { tokenMask: mask });
    const rows = model.hashMapping.hashRows(ids, [B, S], { tokenMask: mask }).rowIds as Int32Array;
    const cols = model.hashMapping.headsPerLayer;
    [1, 14].forEach((id, l) => {
      const layer = new DeepseekV41Engram({ hiddenSize: 64, hcMult: 4, numEmbeddings: config.numEmbeddings[l] });
      const file = readSafetensors(path.join(dir, `model-engram-layer${id}.safetensors`));
      layer.loadStateDict(file.tensors);
      const own = Int32Array.from({ length: B * S * cols }, (_, i) => rows[Math.floor(i / cols) * 2 * cols + l * cols + (i % cols)]);
      const want = layer.forwardRows(streams.get(id)!, own, [B, S], { tokenMask: mask });
      expect(same(outputs.get(id)!.output, want.output)).toBe(true);
    });
  });

  it('forwardAsync gives the bits of forward', async () => {
    const sync = model.forward(streams, ids, [B, S], { tokenMask: mask });
    const async = await model.forwardAsync(streams, ids, [B, S], { tokenMask: mask });
    for (const id of [1, 14]) expect(same(async.outputs.get(id)!.output, sync.outputs.get(id)!.output)).toBe(true);
    expect(Array.from(async.history)).toEqual(Array.from(sync.history));
  });

  it('chunked prefill with the returned history equals one call', () => {
    const whole = model.forward(streams, ids, [B, S], { tokenMask: mask }).outputs.get(14)!.output;
    const split = 4;
    const part = (a: Float32Array | Uint8Array | Int32Array, width: number, t0: number, len: number) => {
      const out = new (a.constructor as { new (n: number): typeof a })(B * len * width);
      for (let b = 0; b < B; b++) out.set(a.subarray((b * S + t0) * width, (b * S + t0 + len) * width) as never, b * len * width);
      return out;
    };
    const first = model.forward(new Map([[14, part(streams.get(14)!, 256, 0, split) as Float32Array]]), part(ids, 1, 0, split) as Int32Array, [B, split], { tokenMask: part(mask, 1, 0, split) as Uint8Array });
    const second = model.forward(new Map([[14, part(streams.get(14)!, 256, split, S - split) as Float32Array]]), part(ids, 1, split, S - split) as Int32Array, [B, S - split], {
      tokenMask: part(mask, 1, split, S - split) as Uint8Array,
      history: first.history,
    });
    expect(same(first.outputs.get(14)!.output, part(whole, 256, 0, split) as Float32Array)).toBe(true);
    expect(same(second.outputs.get(14)!.output, part(whole, 256, split, S - split) as Float32Array)).toBe(true);
  });

  it('decode steps (one token per sequence) equal one call', () => {
    const whole = model.forward(streams, ids, [B, S], { tokenMask: mask }).outputs.get(14)!.output;
    const state = model.newState(B);
    for (let t = 0; t < S; t++) {
      const stepStreams = new Map([1, 14].map((id) => {
        const h = new Float32Array(B * 256);
        for (let b = 0; b < B; b++) h.set(streams.get(id)!.subarray((b * S + t) * 256, (b * S + t + 1) * 256), b * 256);
        return [id, h] as [number, Float32Array];
      }));
      const out = model.step(state, stepStreams, Int32Array.from({ length: B }, (_, b) => ids[b * S + t]), {
        tokenMask: Uint8Array.from({ length: B }, (_, b) => mask[b * S + t]),
      }).get(14)!.output;
      for (let b = 0; b < B; b++) expect(same(out.subarray(b * 256, (b + 1) * 256), whole.subarray((b * S + t) * 256, (b * S + t + 1) * 256))).toBe(true);
    }
  });

  it("DeepSeek's model{rank}-mp{mp} rank files: whole tensors, and tensors split by rows across ranks (the last padded), give the same bits", () => {
    const { tensors } = findEngramTensors(dir);
    const sliceRows = (t: Tensor, from: number, to: number): Tensor => {
      const rowBytes = t.data.byteLength / t.shape[0];
      const bytes = new Uint8Array(t.data.buffer as ArrayBuffer, t.data.byteOffset, t.data.byteLength).slice(from * rowBytes, to * rowBytes);
      return { dtype: t.dtype, shape: [to - from, ...t.shape.slice(1)], data: bytes };
    };
    const sliceCols = (t: Tensor, from: number, to: number): Tensor => {
      const [rows, width] = t.shape;
      const e = t.data.byteLength / (rows * width);
      const src = new Uint8Array(t.data.buffer as ArrayBuffer, t.data.byteOffset, t.data.byteLength);
      const out = new Uint8Array(rows * (to - from) * e);
      for (let r = 0; r < rows; r++) out.set(src.subarray((r * width + from) * e, (r * width + to) * e), r * (to - from) * e);
      return { dtype: t.dtype, shape: [rows, to - from], data: out };
    };
    // A rank's rows padded to `rows` (weight 0, scale code 1, as DeepSeek's convert.py does).
    const padRows = (t: Tensor, rows: number): Tensor => {
      if (t.shape[0] === rows) return t;
      const rowBytes = t.data.byteLength / t.shape[0];
      const bytes = new Uint8Array(rows * rowBytes).fill(t.dtype === 'F8_E8M0' ? 1 : 0);
      bytes.set(new Uint8Array(t.data.buffer as ArrayBuffer, t.data.byteOffset, t.data.byteLength));
      return { dtype: t.dtype, shape: [rows, ...t.shape.slice(1)], data: bytes };
    };
    // How each tensor is laid over the ranks: split by rows or columns, in every rank, or in one.
    type Layout = 'rows' | 'cols' | 'every' | 'one' | 'last';
    const write = (name: string, world: number, split: (tensorName: string) => boolean | Layout) => {
      const out = path.join(root, name);
      fs.mkdirSync(out, { recursive: true });
      for (const f of ['config.json', 'tokenizer.json']) fs.copyFileSync(path.join(dir, f), path.join(out, f));
      for (let rank = 0; rank < world; rank++) {
        const shard: Record<string, Tensor> = {};
        for (const [k, t] of Object.entries(tensors)) {
          const layout = split(k) === true ? 'rows' : split(k) === false ? 'one' : (split(k) as Layout);
          const dim = layout === 'cols' ? 1 : 0;
          const per = Math.ceil(t.shape[dim] / world);
          const [from, to] = [Math.min(t.shape[dim], rank * per), Math.min(t.shape[dim], (rank + 1) * per)];
          if (layout === 'rows') shard[k] = padRows(sliceRows(t, from, to), per); // DeepSeek pads the last rank
          else if (layout === 'cols') shard[k] = sliceCols(t, from, to);
          else if (layout === 'every' || rank === (layout === 'last' || k.includes('layers.14.') ? world - 1 : 0)) shard[k] = t;
        }
        writeSafetensors(path.join(out, `model${rank}-mp${world}.safetensors`), shard);
      }
      return out;
    };
    const want = model.forward(streams, ids, [B, S], { tokenMask: mask });
    // whole tensors spread over two shards; tables (and wkv) split by rows over three
    for (const [name, world, split] of [['mp-whole', 2, () => false], ['mp-split', 3, (k: string) => /embed\.(weight|scale)$|wkv\.(weight|scale)$/.test(k)]] as const) {
      const got = DeepseekV41EngramModel.fromCheckpoint(write(name, world, split)).forward(streams, ids, [B, S], { tokenMask: mask });
      for (const id of [1, 14]) expect(same(got.outputs.get(id)!.output, want.outputs.get(id)!.output)).toBe(true);
    }
    // The split tables stay in the shards' mappings: three row ranges, no copy.
    const split = DeepseekV41EngramModel.fromCheckpoint(path.join(root, 'mp-split'));
    for (const id of [1, 14]) {
      const table = split.layers.get(id)!.table;
      expect(table.parts.map((p) => p.rows)).toEqual([0, 1, 2].map((rank) => Math.min(table.rows, (rank + 1) * Math.ceil(table.rows / 3)) - Math.min(table.rows, rank * Math.ceil(table.rows / 3))));
      table.parts.forEach((p, rank) => {
        // a view of the shard's mapping: the whole file's buffer, at the tensor's offset in it
        const shard = path.join(root, 'mp-split', `model${rank}-mp3.safetensors`);
        const stored = readSafetensors(shard).tensors[`layers.${id}.engram.embed.weight`];
        expect([p.region.buffer.byteLength, p.region.byteOffset]).toEqual([fs.statSync(shard).size, stored.fileOffset]);
      });
      expect(() => table.region).toThrow(/split by rows into 3 regions/);
    }
    // Every tier reads the split table: the pager over the mapped parts, over the shard files, and a copy.
    const pageRows = 7; // pages that straddle the shards' row ranges
    for (const table of [{ tier: 'host', cacheBytes: 1 << 20, pageRows }, { tier: 'file', cacheBytes: 1 << 20, pageRows }, { tier: 'file', cacheBytes: 1 << 20, pageRows, eviction: 'direct' }, { tier: 'host', copy: true }] as const) {
      const got = DeepseekV41EngramModel.fromCheckpoint(path.join(root, 'mp-split'), { table }).forward(streams, ids, [B, S], { tokenMask: mask });
      for (const id of [1, 14]) expect(same(got.outputs.get(id)!.output, want.outputs.get(id)!.output), JSON.stringify(table)).toBe(true);
    }
    // DeepSeek's converter copies unsplit weights into every rank, and may split a
    // projection by its input columns: both assemble to the same layer.
    for (const [name, layout] of [['mp-replicated', 'every'], ['mp-columns', 'cols']] as const) {
      const ckpt = write(name, 4, (k: string) => (/embed\.(weight|scale)$/.test(k) ? 'rows' : /wkv\./.test(k) ? layout : 'every'));
      const got = DeepseekV41EngramModel.fromCheckpoint(ckpt).forward(streams, ids, [B, S], { tokenMask: mask });
      for (const id of [1, 14]) expect(same(got.outputs.get(id)!.output, want.outputs.get(id)!.output), name).toBe(true);
    }
    // Whole tensors, each layer in one shard: the file tier reads them there; a table whose
    // scales lie in another file than its rows is refused for tier 'file', naming both.
    const fileTier = { table: { tier: 'file' as const, cacheBytes: 1 << 20, pageRows: 1 } };
    const wholeFile = DeepseekV41EngramModel.fromCheckpoint(path.join(root, 'mp-whole'), fileTier).forward(streams, ids, [B, S], { tokenMask: mask });
    for (const id of [1, 14]) expect(same(wholeFile.outputs.get(id)!.output, want.outputs.get(id)!.output)).toBe(true);
    const apart = write('mp-apart', 2, (k: string) => (/layers\.1\.engram\.embed\.scale$/.test(k) ? 'last' : false));
    expect(same(DeepseekV41EngramModel.fromCheckpoint(apart).forward(streams, ids, [B, S], { tokenMask: mask }).outputs.get(1)!.output, want.outputs.get(1)!.output)).toBe(true);
    expect(() => DeepseekV41EngramModel.fromCheckpoint(apart, fileTier)).toThrow(/rows 0\.\.\d+ lie in '.*model0-mp2.safetensors' and their scales in '.*model1-mp2.safetensors'/);
    const tableByColumns = write('mp-table-cols', 2, (k: string) => (/embed\.weight$/.test(k) ? 'cols' : /embed\.scale$/.test(k) ? 'rows' : 'every'));
    expect(() => DeepseekV41EngramModel.fromCheckpoint(tableByColumns)).toThrow(/table tensor 'layers.1.engram.embed.weight' is split by columns across 2 shards: only splits by rows are read/);
    // Rows split over three shards, their scales whole in one: the table is cut where either is.
    const mixed = write('mp-mixed', 3, (k: string) => /embed\.weight$/.test(k));
    const mixedModel = DeepseekV41EngramModel.fromCheckpoint(mixed);
    expect(mixedModel.layers.get(1)!.table.parts.length).toBe(3);
    const gotMixed = mixedModel.forward(streams, ids, [B, S], { tokenMask: mask });
    for (const id of [1, 14]) expect(same(gotMixed.outputs.get(id)!.output, want.outputs.get(id)!.output)).toBe(true);
    expect(() => DeepseekV41EngramModel.fromCheckpoint(mixed, { table: { tier: 'file', cacheBytes: 1 << 16 } })).toThrow(/tier 'file' reads a table's rows and their scales from one file, but rows \d+\.\.\d+ lie in '.*model1-mp3.safetensors' and their scales in '.*model0-mp3.safetensors': use tier 'host'/);
    // parts that do not join along their first dimension
    const bad = path.join(root, 'mp-bad');
    fs.cpSync(path.join(root, 'mp-split'), bad, { recursive: true });
    const shard1 = path.join(bad, 'model1-mp3.safetensors');
    const st = readSafetensors(shard1).tensors;
    const k = 'layers.1.engram.wkv.weight';
    const t = st[k];
    const copy = new Uint8Array(t.data.buffer as ArrayBuffer, t.data.byteOffset, t.data.byteLength).slice();
    writeSafetensors(shard1, { ...Object.fromEntries(Object.entries(st).map(([n, v]) => [n, { ...v, data: new Uint8Array(v.data.buffer as ArrayBuffer, v.data.byteOffset, v.data.byteLength).slice() }])), [k]: { dtype: t.dtype, shape: [t.shape[0] * 2, t.shape[1] / 2], data: copy } });
    expect(() => DeepseekV41EngramModel.fromCheckpoint(bad)).toThrow(/tensor 'layers.1.engram.wkv.weight' is in 3 shards with parts that do not join along their first dimension/);
  });

  it('refuses a broken checkpoint with a clear error', () => {
    const broken = path.join(root, 'broken');
    fs.cpSync(dir, broken, { recursive: true });
    fs.rmSync(path.join(broken, 'model-engram-layer14.safetensors'));
    expect(() => DeepseekV41EngramModel.fromCheckpoint(broken)).toThrow(/checkpoint shard '.*model-engram-layer14.safetensors' is missing/);
    const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')).text_config; // the released config's shape
    delete cfg.engram_head_dim;
    fs.writeFileSync(path.join(broken, 'config.json'), JSON.stringify({ text_config: cfg }));
    expect(() => DeepseekV41EngramModel.fromCheckpoint(broken)).toThrow(/has no 'engram_head_dim' \(top level or under text_config\)/);
    expect(() => DeepseekV41EngramModel.fromCheckpoint(dir, { tokenizer: CompressedTokenizer.fromLookup([0, 1, 2, 3]) })).toThrow(/compress/);
    expect(() => DeepseekV41EngramModel.fromCheckpoint(path.join(root, 'nowhere'))).toThrow(/does not exist/);
  });
});
