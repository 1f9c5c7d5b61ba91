// Tables split by rows into several regions (the row ranges of a sharded checkpoint):
// every reader (gather, the fused gather of the layers, convert, copy, the pager in
// memory and from files) gives the bits of the same table in one region.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { EngramTable, MAX_TABLE_PARTS, TablePager, writeSafetensors, readSafetensors, type Tensor } from '../src/index.js';
import { native } from '../src/native/index.js';
import { smallEngram, smallInputs, smallStateDict } from './helpers/forward-small.js';
import { randInt, rng } from './helpers/random.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'engram-split-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));
const sameBits = (a: Float32Array, b: Float32Array) => Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0;

/** `whole`'s rows cut at `cuts` into separate buffers (each part its own ArrayBuffer). */
function splitTable(whole: EngramTable, cuts: number[]): EngramTable {
  const bounds = [0, ...cuts, whole.rows];
  const data = whole.data;
  const scales = whole.scales;
  const parts = bounds.slice(1).map((end, i) => {
    const begin = bounds[i];
    return {
      rows: end - begin,
      data: data.slice(begin * whole.rowBytes, end * whole.rowBytes),
      scales: scales?.slice(begin * (whole.cols / 32), end * (whole.cols / 32)),
    };
  });
  return EngramTable.fromParts(parts, whole.cols, whole.dtype);
}

describe('tables split by rows', () => {
  const rows = 1000;
  const cols = 64;
  const cuts = [1, 333, 334, 900]; // a one-row part, uneven parts
  const r = rng(74);
  const ids = Int32Array.from({ length: 4096 }, (_, i) => (i < 5 ? [0, 332, 333, 334, 999][i] : randInt(r, 0, rows - 1)));

  for (const dtype of ['f32', 'bf16', 'f16', 'f8e4m3'] as const) {
    it(`${dtype}: gather, convert, copy and toFloat32 give the bits of the table in one region`, () => {
      const whole = EngramTable.random(rows, cols, dtype, { seed: 3 });
      const split = splitTable(whole, cuts);
      expect(split.isSplit).toBe(true);
      expect(split.parts.map((p) => p.rows)).toEqual([1, 332, 1, 566, 100]);
      expect(split.byteLength).toBe(whole.byteLength);
      expect(sameBits(split.gather(ids), whole.gather(ids))).toBe(true);
      expect(sameBits(split.gather(BigInt64Array.from(ids, BigInt)), whole.gather(ids))).toBe(true);
      expect(sameBits(split.toFloat32(), whole.toFloat32())).toBe(true);
      const copy = split.copy();
      expect(copy.isSplit).toBe(false);
      expect(Buffer.compare(copy.data, whole.data)).toBe(0);
      if (dtype === 'f8e4m3') expect(Buffer.compare(copy.scales!, whole.scales!)).toBe(0);
      expect(Buffer.compare(split.convert('bf16').data, whole.convert('bf16').data)).toBe(0);
      expect(() => split.region).toThrow(/split by rows into 5 regions/);
      expect(() => split.data).toThrow(/split by rows into 5 regions/);
      expect(() => split.gather(Int32Array.of(rows))).toThrow(/1000/);
    });
  }

  it(`${MAX_TABLE_PARTS} parts (a 64-rank checkpoint): the bits of the table in one region`, () => {
    const whole = EngramTable.random(rows, cols, 'f8e4m3', { seed: 5 });
    const split = splitTable(whole, Array.from({ length: MAX_TABLE_PARTS - 1 }, (_, i) => 15 * (i + 1)));
    expect(split.parts.length).toBe(MAX_TABLE_PARTS);
    expect(sameBits(split.gather(ids), whole.gather(ids))).toBe(true);
    expect(sameBits(split.toFloat32(), whole.toFloat32())).toBe(true);
  });

  it('the pager reads pages that straddle the parts, from memory and from the files', () => {
    const whole = EngramTable.random(rows, cols, 'f8e4m3', { seed: 4 });
    const split = splitTable(whole, cuts);
    // the same parts as files of their own (rows, then scales, after a header)
    const files = split.parts.map((p, i) => {
      const file = path.join(root, `part${i}.safetensors`);
      writeSafetensors(file, {
        weight: { dtype: 'F8_E4M3', shape: [p.rows, cols], data: new Uint8Array(p.region.buffer as ArrayBuffer, p.region.byteOffset, p.region.byteLength) },
        scale: { dtype: 'F8_E8M0', shape: [p.rows, cols / 32], data: new Uint8Array(p.scaleRegion!.buffer as ArrayBuffer, p.scaleRegion!.byteOffset, p.scaleRegion!.byteLength) },
      });
      const st = readSafetensors(file).tensors;
      return { path: file, dtype: 'f8e4m3' as const, rows: p.rows, cols, dataOffset: st.weight.fileOffset!, scalesOffset: st.scale.fileOffset! };
    });
    const want = whole.gather(ids);
    for (const home of [split, files] as const) {
      for (const eviction of ['lru', 'direct'] as const) {
        const pager = TablePager.create(home, { cacheBytes: 300 * (cols + 2), pageRows: 7, eviction });
        for (let at = 0; at < ids.length; at += 32) {
          const batch = ids.subarray(at, at + 32);
          expect(sameBits(pager.gather(batch), want.subarray(at * cols, (at + 32) * cols))).toBe(true);
        }
      }
    }
    expect(sameBits(EngramTable.readFile(files).toFloat32(), whole.toFloat32())).toBe(true);
    // with progress: every byte of codes and scales counted once, the last call at the total
    const seen: Array<[number, number]> = [];
    const withProgress = EngramTable.readFile(files, { onProgress: (done, total) => seen.push([done, total]) });
    expect(sameBits(withProgress.toFloat32(), whole.toFloat32())).toBe(true);
    const totalBytes = files.reduce((n, f) => n + f.rows * (cols + cols / 32), 0);
    expect(seen.length).toBeGreaterThanOrEqual(2 * files.length);
    expect(seen.at(-1)).toEqual([totalBytes, totalBytes]);
    expect(seen.every(([d], i) => i === 0 || d > seen[i - 1][0])).toBe(true);
    expect(() => EngramTable.readFile(files, { onProgress: 'yes' as unknown as () => void })).toThrow(/options.onProgress must be a function, got "yes"/);
    // files that do not make one table, or are missing, are refused naming them
    expect(() => TablePager.create([files[0], { ...files[1], cols: 32 }], { cacheBytes: 1 << 16 })).toThrow(/home\[1\] is f8e4m3 x 32 but home\[0\] is f8e4m3 x 64/);
    expect(() => TablePager.create([files[0], { ...files[1], path: path.join(root, 'nope.safetensors') }], { cacheBytes: 1 << 16 })).toThrow(/nope.safetensors' does not exist/);
    expect(() => TablePager.create([], { cacheBytes: 1 << 16 })).toThrow(TypeError);
    // a file that lost its last rows is refused when the pager opens it, naming it
    fs.truncateSync(files[4].path, files[4].scalesOffset + 10);
    expect(() => TablePager.create(files, { cacheBytes: 1 << 16 })).toThrow(/part4.safetensors' is truncated/);
  });

  it('the paper layer reads a split table in place: the bits of the table in one region', () => {
    const dict = smallStateDict();
    const name = 'multi_head_embedding.embedding.weight';
    const t = dict[name];
    const bytes = new Uint8Array((t.data as Float32Array).buffer);
    const rowBytes = t.shape[1] * 4;
    const half = Math.floor(t.shape[0] / 2);
    const rowParts = [
      { path: 'a', shape: [half, t.shape[1]], data: bytes.slice(0, half * rowBytes) },
      { path: 'b', shape: [t.shape[0] - half, t.shape[1]], data: bytes.slice(half * rowBytes) },
    ];
    const split: Tensor = { dtype: 'F32', shape: t.shape, data: t.data, rowParts };
    const want = smallEngram();
    const got = smallEngram();
    got.loadStateDict({ ...dict, [name]: split });
    expect(got.table.parts.length).toBe(2);
    const { hidden, ids: inputIds, shape } = smallInputs();
    expect(sameBits(got.forward(hidden, inputIds, shape).output, want.forward(hidden, inputIds, shape).output)).toBe(true);
  });

  it('bad parts get clear errors', () => {
    const part = { rows: 2, data: new Uint8Array(2 * 32), scales: new Uint8Array(2) };
    expect(() => EngramTable.fromParts([], 32, 'f8e4m3')).toThrow(TypeError);
    expect(() => EngramTable.fromParts(new Array(MAX_TABLE_PARTS + 1).fill(part), 32, 'f8e4m3')).toThrow(/at most 64/);
    expect(() => EngramTable.fromParts([part, { ...part, data: new Uint8Array(63) }], 32, 'f8e4m3')).toThrow(/parts\[1\] data has 63 bytes but 2 x 32 f8e4m3 needs 64/);
    expect(() => EngramTable.fromParts([part, { ...part, scales: undefined }], 32, 'f8e4m3')).toThrow(/needs 2 UE8M0 scale bytes for parts\[1\]/);
    expect(() => EngramTable.fromParts([{ ...part, rows: 0 }], 32, 'f8e4m3')).toThrow(/rows/);
    // the addon checks again where memory is touched: parts must cover tableRows exactly, within their buffers
    const split = EngramTable.fromParts([part, part], 32, 'f8e4m3');
    const args = { ...split.nativeArgs(), rowIds: Int32Array.of(0), tokens: 1, rowsPerToken: 1, out: new Float32Array(32), threads: 0 };
    expect(() => native().gatherRows({ ...args, tableRows: 5 })).toThrow(/tableParts hold 4 rows but tableRows is 5/);
    const parts = args.tableParts!;
    expect(() => native().gatherRows({ ...args, tableParts: [parts[0], { ...parts[1], tableByteOffset: 1 }] })).toThrow(/run past/);
    expect(() => native().gatherRows({ ...args, tableParts: new Array(65).fill(parts[0]) })).toThrow(/1 to 64 row ranges/);
  });
});
