import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { DeepseekV41EngramModel, EngramTable, readSafetensors, TablePager, writeSafetensors, writeSyntheticV41Checkpoint } from '../src/index.js';
import { MappedFile } from '../src/core/mapped-file.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'engram-large-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('safetensors files over 4 GiB (sparse here)', () => {
  it('map natively: big tensors as MappedFile regions the gather reads, small ones as ArrayBuffer views', () => {
    const file = path.join(dir, 'big.safetensors');
    const cols = 64;
    const rows = (5 * 2 ** 30) / cols; // a 5 GiB fp8 table, written as a hole
    const marker = Float32Array.of(1.5, -2, 3.25);
    writeSafetensors(file, {
      'table.weight': { dtype: 'F8_E4M3', shape: [rows, cols], hole: true },
      'table.scale': { dtype: 'F8_E8M0', shape: [rows, cols / 32], hole: true },
      marker: { dtype: 'F32', shape: [3], data: marker },
    });
    expect(fs.statSync(file).size).toBeGreaterThan(2 ** 32);
    const st = readSafetensors(file);
    const table = st.tensors['table.weight'];
    expect(table.data.buffer).toBeInstanceOf(MappedFile);
    expect(Array.from(new Float32Array(st.tensors.marker.data.buffer as ArrayBuffer, st.tensors.marker.data.byteOffset, 3))).toEqual([1.5, -2, 3.25]);
    const t = EngramTable.fromBytes(table.data, rows, cols, 'f8e4m3', st.tensors['table.scale'].data);
    const got = t.gather(Int32Array.of(rows - 1, 0));
    expect(got.length).toBe(2 * cols);
    expect(got.every((v) => v === 0)).toBe(true);
    expect(() => t.data).toThrow(/more than one typed array can view/);
  });

  it('a file-tier pager reads a 5 GiB table in a 5 GiB file at the right offsets (rows written past 4 GiB)', () => {
    const file = path.join(dir, 'paged.safetensors');
    const cols = 256;
    const rows = (5 * 2 ** 30) / cols;
    writeSafetensors(file, {
      'embed.weight': { dtype: 'F8_E4M3', shape: [rows, cols], hole: true },
      'embed.scale': { dtype: 'F8_E8M0', shape: [rows, cols / 32], hole: true },
    });
    const st = readSafetensors(file);
    const data = st.tensors['embed.weight'];
    const scales = st.tensors['embed.scale'];
    expect(scales.data.byteOffset).toBe(0); // an ArrayBuffer view: only fileOffset says where it lies
    expect(scales.fileOffset).toBe(data.fileOffset! + rows * cols);
    // Known rows near both ends (codes and scales past 4 GiB in the file).
    const picked = [0, 1, 777_777, rows - 2, rows - 1];
    const fd = fs.openSync(file, 'r+');
    picked.forEach((r, i) => {
      fs.writeSync(fd, Uint8Array.from({ length: cols }, (_, c) => ((r + c * 7 + i) % 120) + 8), 0, cols, data.fileOffset! + r * cols);
      fs.writeSync(fd, Uint8Array.from({ length: cols / 32 }, (_, c) => 120 + c + i), 0, cols / 32, scales.fileOffset! + r * (cols / 32));
    });
    fs.closeSync(fd);
    const mapped = EngramTable.fromBytes(readSafetensors(file).tensors['embed.weight'].data, rows, cols, 'f8e4m3', readSafetensors(file).tensors['embed.scale'].data);
    const pager = TablePager.create({ path: file, dtype: 'f8e4m3', rows, cols, dataOffset: data.fileOffset!, scalesOffset: scales.fileOffset }, { cacheBytes: 2 ** 20, pageRows: 2 });
    const ids = BigInt64Array.from([...picked, 5, rows - 3].map(BigInt));
    const want = mapped.gather(ids);
    expect(want.some((v) => v !== 0)).toBe(true);
    expect(Buffer.from(pager.gather(ids).buffer).equals(Buffer.from(want.buffer))).toBe(true);
  });

  it("DeepSeek-V4.1's released table geometry split over DeepSeek's 8 model{rank}-mp8 rank files (the last padded) opens mapped, with little memory", () => {
    const ckpt = path.join(dir, 'v41-mp8');
    const config = writeSyntheticV41Checkpoint(ckpt, { rowsScale: 1, sparseTables: true, mp: 8, hiddenSize: 64 });
    expect(config.numEmbeddings[0]).toBeGreaterThan(3.8e8);
    const before = process.memoryUsage().rss;
    const model = DeepseekV41EngramModel.fromCheckpoint(ckpt);
    const grown = process.memoryUsage().rss - before;
    expect(grown).toBeLessThan(2 ** 30); // the 2 x 98 GB of tables are not read
    for (const [i, id] of config.layerIds.entries()) {
      const table = model.layers.get(id)!.table;
      expect(table.rows).toBe(config.numEmbeddings[i]);
      expect(table.parts.length).toBe(8);
      expect(table.byteLength).toBe(config.numEmbeddings[i] * 264);
    }
    // The tables are holes (zero rows): the layer adds nothing, and reading rows in every shard works.
    const ids = Int32Array.from({ length: 64 }, (_, i) => (i * 7919 + 13) % 120_000);
    const streams = new Map(config.layerIds.map((id) => [id, Float32Array.from({ length: 64 * 4 * 64 }, (_, j) => Math.sin(j + id))]));
    const out = model.forward(streams, ids, [1, 64]);
    for (const id of config.layerIds) expect(Buffer.from(out.outputs.get(id)!.output.buffer).equals(Buffer.from(streams.get(id)!.buffer))).toBe(true);
    const table = model.layers.get(1)!.table;
    const last = BigInt64Array.from([0, table.parts[0].rows, table.rows - 1].map(BigInt)); // both sides of a shard boundary, the last row
    expect(table.gather(last).every((v) => v === 0)).toBe(true);
  });
});
