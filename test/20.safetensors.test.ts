import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { Engram, readSafetensors, writeSafetensors, type Tensor } from '../src/index.js';
import { smallConfig, smallEngram, smallInputs, smallStateDict } from './helpers/forward-small.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'engram-st-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
const same = (a: Float32Array, b: Float32Array) => Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0;

function headerFile(name: string, header: unknown, data = new Uint8Array(0), declaredLength?: number): string {
  const json = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header));
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(declaredLength ?? json.length));
  const file = path.join(dir, name);
  fs.writeFileSync(file, Buffer.concat([prefix, json, data]));
  return file;
}

describe('safetensors', () => {
  const { hidden, ids, shape } = smallInputs();

  it('a saved layer reloads from the path alone and computes the same bits; the table is memory-mapped', () => {
    const engram = smallEngram();
    const file = path.join(dir, 'layer.safetensors');
    engram.saveSafetensors(file);
    const loaded = Engram.fromSafetensors(file, { tokenizer: engram.hashMapping.tokenizer });
    expect(loaded.config).toEqual(engram.config);
    expect(loaded.table.dtype).toBe('f32');
    expect(loaded.table.region.buffer.byteLength).toBe(fs.statSync(file).size); // a view of the mapping, not a copy
    expect(same(loaded.forward(hidden, ids, shape).output, engram.forward(hidden, ids, shape).output)).toBe(true);
    loaded.table.prefault(); // every page mapped now: nothing changes but when the faults happen
    expect(same(loaded.forward(hidden, ids, shape).output, engram.forward(hidden, ids, shape).output)).toBe(true);
  });

  it('keeps a bf16 table in bf16, and loads one layer of a multi-layer file by prefix', () => {
    const engram = smallEngram({ tableDtype: 'bf16' });
    const file = path.join(dir, 'model.safetensors');
    const other: Tensor = { dtype: 'F32', shape: [2], data: Float32Array.of(1, 2) };
    writeSafetensors(file, { ...engram.stateDict({ prefix: 'layers.1.engram.' }), 'layers.0.mlp.weight': other });
    const loaded = Engram.fromSafetensors(file, { prefix: 'layers.1.engram.', config: smallConfig(), tokenizer: engram.hashMapping.tokenizer });
    expect(loaded.table.dtype).toBe('bf16');
    expect(same(loaded.forward(hidden, ids, shape).output, engram.forward(hidden, ids, shape).output)).toBe(true);
    expect(() => Engram.fromSafetensors(file, { tokenizer: engram.hashMapping.tokenizer })).toThrow(/has no engram_config metadata: pass options.config/);
  });

  it('reads BF16 and F16 weights (as a bf16/fp16 PyTorch checkpoint stores them)', () => {
    const dict = smallStateDict();
    const w = dict['value_proj.weight'].data as Float32Array;
    const bf16 = Uint16Array.from(w, (x) => new Uint32Array(Float32Array.of(x).buffer)[0] >>> 16); // truncation: exact in bf16
    const f16 = Uint16Array.from({ length: 32 }, () => 0x3c00); // 1.0
    const engram = smallEngram();
    engram.loadStateDict({
      ...dict,
      'value_proj.weight': { dtype: 'BF16', shape: [32, 64], data: bf16 },
      'norm1.0.weight': { dtype: 'F16', shape: [32], data: f16 },
    });
    const back = engram.stateDict();
    const want = Float32Array.from(bf16, (b) => new Float32Array(Uint32Array.of(b << 16).buffer)[0]);
    expect(same(back['value_proj.weight'].data as Float32Array, want)).toBe(true);
    expect(Array.from(back['norm1.0.weight'].data as Float32Array)).toEqual(new Array(32).fill(1));
  });

  it('corrupt or truncated files are clear errors, never crashes', () => {
    const ok = { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } };
    expect(() => readSafetensors(headerFile('short', '', new Uint8Array(0), 0).concat('-missing'))).toThrow(/cannot open/);
    fs.writeFileSync(path.join(dir, 'tiny'), Buffer.from([1, 2, 3]));
    expect(() => readSafetensors(path.join(dir, 'tiny'))).toThrow(/it has 3 bytes, fewer than the 8-byte header length/);
    expect(() => readSafetensors(headerFile('long', ok, new Uint8Array(8), 10_000))).toThrow(/header length 10000 runs past the end of the file/);
    expect(() => readSafetensors(headerFile('json', '{"a": ', new Uint8Array(8)))).toThrow(/the header is not valid JSON/);
    expect(() => readSafetensors(headerFile('range', ok, new Uint8Array(4)))).toThrow(/tensor 'a' data_offsets \[0, 8\] run outside the 4 data bytes/);
    expect(() => readSafetensors(headerFile('dtype', { a: { dtype: 'F12', shape: [2], data_offsets: [0, 8] } }, new Uint8Array(8)))).toThrow(/tensor 'a' has an unknown dtype "F12"/);
    expect(() => readSafetensors(headerFile('size', { a: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, new Uint8Array(8)))).toThrow(/tensor 'a' has 8 bytes but F32 \[3\] needs 12/);
    const good = readSafetensors(headerFile('good', ok, new Uint8Array(Float32Array.of(1.5, -2).buffer)));
    expect(good.tensors.a.shape).toEqual([2]);
  });

  it('a failed load from a file keeps the previous weights', () => {
    const engram = smallEngram();
    const before = engram.forward(hidden, ids, shape).output;
    const file = path.join(dir, 'wrong.safetensors');
    const dict = { ...smallStateDict() };
    delete dict['short_conv.conv.weight'];
    writeSafetensors(file, dict);
    expect(() => engram.loadStateDict(readSafetensors(file).tensors)).toThrow(/missing tensor 'short_conv.conv.weight' \(expected shape \[128, 1, 4\]\)/);
    expect(same(engram.forward(hidden, ids, shape).output, before)).toBe(true);
  });
});

describe('safetensors strictness, as the reference implementation', () => {
  const file = (header: Record<string, unknown>, dataBytes: number): ArrayBuffer => {
    const json = new TextEncoder().encode(JSON.stringify(header));
    const out = new Uint8Array(8 + json.length + dataBytes);
    new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
    out.set(json, 8);
    return out.buffer;
  };
  const t = (begin: number, end: number) => ({ dtype: 'U8', shape: [end - begin], data_offsets: [begin, end] });

  it('tensors tile the data exactly: overlap, gaps and trailing bytes are refused by name', async () => {
    const { parseSafetensors: parse, writeSafetensors: write } = await import('../src/index.js');
    expect(Object.keys(parse(file({ a: t(0, 4), b: t(4, 6) }, 6)).tensors)).toEqual(['a', 'b']);
    expect(() => parse(file({ a: t(0, 4), b: t(2, 6) }, 6))).toThrow(/tensor 'b' data_offsets \[2, 6\] overlap the tensor before it \(which ends at 4\)/);
    expect(() => parse(file({ a: t(0, 4), b: t(0, 4) }, 4))).toThrow(/overlap the tensor before it/);
    expect(() => parse(file({ a: t(0, 2), b: t(4, 6) }, 6))).toThrow(/the data bytes \[2, 4\) before tensor 'b' belong to no tensor/);
    expect(() => parse(file({ a: t(0, 4) }, 9))).toThrow(/5 bytes after the last tensor belong to no tensor \(the data section is 9 bytes\)/);
    expect(() => write(path.join(os.tmpdir(), 'never.safetensors'), { a: { dtype: 'F32', shape: [-1, 4], data: new Float32Array(0) } })).toThrow(
      /tensor 'a' has an invalid shape .*dimensions must be non-negative integers/,
    );
  });
});
