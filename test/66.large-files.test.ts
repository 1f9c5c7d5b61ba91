import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { EngramTable, readSafetensors, writeSafetensors } from '../src/index.js';
import { MappedFile } from '../src/mapped-file.js';

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
});
