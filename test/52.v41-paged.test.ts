import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { DeepseekV41EngramModel, writeSyntheticV41Checkpoint } from '../src/index.js';
import { randInt, rng } from './helpers/random.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'engram-v41-paged-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));
const dir = path.join(root, 'ckpt');
writeSyntheticV41Checkpoint(dir, { rowsScale: 2e-5, hiddenSize: 64, hcMult: 4, seed: 5 });
const same = (a: Float32Array, b: Float32Array) => Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0;

describe("DeepSeek-V4.1's fp8 tables through the pager", () => {
  const inMemory = DeepseekV41EngramModel.fromCheckpoint(dir);
  const rows = inMemory.layers.get(1)!.table.rows;
  // 264-byte rows (256 fp8 codes + 8 UE8M0 scales): a cache of half the table.
  const cacheBytes = Math.floor((rows * 264) / 2);
  const B = 2;
  const S = 8;
  const r = rng(23);
  const batchOf = () => ({
    ids: Int32Array.from({ length: B * S }, () => randInt(r, 0, 128_000)),
    mask: Uint8Array.from({ length: B * S }, () => (r() < 0.1 ? 0 : 1)),
    streams: new Map([1, 14].map((id) => [id, Float32Array.from({ length: B * S * 4 * 64 }, () => r() * 4 - 2)])),
  });

  for (const eviction of ['lru', 'lfu', 'direct'] as const) {
    it(`file tier (${eviction}): both layers give the in-memory bits, with and without a prefetch ticket`, async () => {
      const paged = DeepseekV41EngramModel.fromCheckpoint(dir, { table: { tier: 'file', cacheBytes, pageRows: 4, eviction } });
      expect(paged.layers.get(14)!.pager!.home).toMatchObject({ dtype: 'f8e4m3', cols: 256 });
      for (let b = 0; b < 6; b++) {
        const { ids, mask, streams } = batchOf();
        const want = inMemory.forward(streams, ids, [B, S], { tokenMask: mask });
        const ticket = b % 2 ? paged.prefetch(ids, [B, S], { tokenMask: mask }) : undefined;
        const got = b % 3 === 2 ? await paged.forwardAsync(streams, ids, [B, S], { tokenMask: mask, ticket }) : paged.forward(streams, ids, [B, S], { tokenMask: mask, ticket });
        for (const id of [1, 14]) expect(same(got.outputs.get(id)!.output, want.outputs.get(id)!.output)).toBe(true);
        expect(Array.from(got.history)).toEqual(Array.from(want.history));
      }
      for (const id of [1, 14]) {
        const s = paged.layers.get(id)!.pagerStats();
        expect(s.ticketsInFlight).toBe(0);
        expect(s.lookups).toBe(6 * B * S * 24);
        if (eviction === 'direct') expect(s.pageHits).toBe(0);
      }
    });
  }

  it('decode steps with the next step prefetched while this one runs', () => {
    const paged = DeepseekV41EngramModel.fromCheckpoint(dir, { table: { tier: 'host', cacheBytes, pageRows: 4 } });
    const a = paged.newState(B);
    const b = inMemory.newState(B);
    const tokens = Array.from({ length: 5 }, () => Int32Array.from({ length: B }, () => randInt(r, 0, 128_000)));
    const streams = new Map([1, 14].map((id) => [id, Float32Array.from({ length: B * 4 * 64 }, () => r() * 2 - 1)]));
    let next = paged.prefetch(tokens[0], [B, 1], { history: a.history });
    for (let t = 0; t < tokens.length; t++) {
      const got = paged.forward(streams, tokens[t], [B, 1], { history: a.history, ticket: next });
      const want = inMemory.forward(streams, tokens[t], [B, 1], { history: b.history });
      a.history = got.history;
      b.history = want.history;
      if (t + 1 < tokens.length) next = paged.prefetch(tokens[t + 1], [B, 1], { history: a.history });
      for (const id of [1, 14]) expect(same(got.outputs.get(id)!.output, want.outputs.get(id)!.output)).toBe(true);
    }
  });

  it('a ticket for other ids, used twice, or for one layer only', () => {
    const paged = DeepseekV41EngramModel.fromCheckpoint(dir, { table: { tier: 'file', cacheBytes, pageRows: 4 } });
    const x = batchOf();
    const y = batchOf();
    const ticket = paged.prefetch(x.ids, [B, S]);
    expect(() => paged.forward(y.streams, y.ids, [B, S], { ticket })).toThrow(/prefetched for other ids/);
    expect(() => paged.forward(x.streams, x.ids, [B, S], { ticket, tokenMask: x.mask })).toThrow(/prefetched for other ids, shape, history or mask/);
    paged.forward(new Map([[14, x.streams.get(14)!]]), x.ids, [B, S], { ticket }); // layer 1's pages are released too
    expect(() => paged.forward(x.streams, x.ids, [B, S], { ticket })).toThrow(/already used/);
    for (const id of [1, 14]) expect(paged.layers.get(id)!.pagerStats().ticketsInFlight).toBe(0);
    expect(() => DeepseekV41EngramModel.fromCheckpoint(dir, { table: { tier: 'file', cacheBytes: 100, pageRows: 8 } })).toThrow(/smaller than one page/);
  });

  it("tier 'host' with copy: the tables move into process memory, same bits", () => {
    const copied = DeepseekV41EngramModel.fromCheckpoint(dir, { table: { tier: 'host', copy: true } });
    const layer = copied.layers.get(14)!;
    expect(layer.pager).toBeUndefined();
    expect(layer.table.region.buffer).toBeInstanceOf(ArrayBuffer);
    expect(layer.table.region.buffer).not.toBe(inMemory.layers.get(14)!.table.region.buffer);
    expect(Buffer.from(layer.table.scales!).equals(Buffer.from(inMemory.layers.get(14)!.table.scales!))).toBe(true);
    const { ids, mask, streams } = batchOf();
    const got = copied.forward(streams, ids, [B, S], { tokenMask: mask });
    const want = inMemory.forward(streams, ids, [B, S], { tokenMask: mask });
    for (const id of [1, 14]) expect(same(got.outputs.get(id)!.output, want.outputs.get(id)!.output)).toBe(true);
    expect(() => DeepseekV41EngramModel.fromCheckpoint(dir, { table: { tier: 'host', copy: true, cacheBytes: 2 ** 20 } })).toThrow(/copy goes with tier 'host' and no cacheBytes/);
    expect(() => DeepseekV41EngramModel.fromCheckpoint(dir, { table: { tier: 'file', copy: true } })).toThrow(RangeError);
  });
});
