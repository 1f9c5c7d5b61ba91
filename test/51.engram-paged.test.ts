import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { CompressedTokenizer, Engram, EngramModel, hottestRows, TablePager, type TableDtype } from '../src/index.js';
import { rng } from './helpers/random.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'engram-paged-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
const tokenizer = CompressedTokenizer.deepseekV3();
const config = { layerId: 1, layerIds: [1], hiddenSize: 32, hcMult: 2, nEmbedPerNgram: 64, nHeadPerNgram: 2, maxNgramSize: 3, engramVocabSize: [3001, 3001], kernelSize: 4 };
const bits = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

function inputs(seed: number, batch: number, seqLen: number) {
  const r = rng(seed);
  const ids = Int32Array.from({ length: batch * seqLen }, () => Math.floor(r() * 5000));
  const hidden = Float32Array.from({ length: batch * seqLen * config.hcMult * config.hiddenSize }, () => r() * 2 - 1);
  return { ids, hidden, shape: [batch, seqLen] as [number, number] };
}

function saved(dtype: TableDtype): { engram: Engram; file: string } {
  const engram = new Engram(config, { tokenizer, tableDtype: dtype, seed: 3 });
  const file = path.join(dir, `layer-${dtype}.safetensors`);
  engram.saveSafetensors(file);
  return { engram, file };
}

describe('an Engram layer through the pager', () => {
  for (const dtype of ['f32', 'bf16', 'f8e4m3'] as TableDtype[]) {
    it(`${dtype}: a file-tier table with a cache of a quarter of it gives the in-memory bits, batch after batch`, async () => {
      const { engram, file } = saved(dtype);
      const tableBytes = engram.table.rows * TablePager.rowBytes(dtype, engram.table.cols);
      const paged = Engram.fromSafetensors(file, { tokenizer, table: { tier: 'file', cacheBytes: Math.floor(tableBytes / 4), pageRows: 16 } });
      expect(paged.pager?.slots).toBeGreaterThan(0);
      for (let b = 0; b < 12; b++) {
        const { ids, hidden, shape } = inputs(b, 2, 24);
        const want = engram.forward(hidden, ids, shape);
        const got = b % 3 === 0 ? paged.forward(hidden, ids, shape) : b % 3 === 1
          ? paged.forward(hidden, ids, shape, { ticket: paged.prefetch(ids, shape) })
          : await paged.forwardAsync(hidden, ids, shape, { ticket: paged.prefetch(ids, shape) });
        expect(bits(got.output).equals(bits(want.output))).toBe(true);
        expect(bits(got.gates).equals(bits(want.gates))).toBe(true);
      }
      const s = paged.pagerStats();
      expect(s.lookups).toBe(12 * 48 * paged.hashMapping.headsPerLayer);
      expect(s.evictions).toBeGreaterThan(0);
      expect(s.ticketsInFlight).toBe(0);
      paged.resetPagerStats();
      expect(paged.pagerStats().lookups).toBe(0);
    });
  }

  it('host tier with a cache, LFU and hot rows, and token-by-token decode with prefetch one step ahead', () => {
    const { engram } = saved('bf16');
    const paged = new Engram(config, { tokenizer, tableDtype: 'bf16', seed: 3 });
    const pager = paged.usePager({ tier: 'host', cacheBytes: 64 * 1024, pageRows: 8, eviction: 'lfu', hotRows: 64 })!;
    const { ids, hidden } = inputs(40, 3, 10);
    const sample = paged.hashMapping.hashRows(ids, [3, 10], { layers: [1] }).rowIds;
    pager.setHotRows(hottestRows(sample, 64));
    const whole = engram.forward(hidden, ids, [3, 10]);
    const state = paged.newState(3);
    const width = config.hcMult * config.hiddenSize;
    const column = (t: number) => Int32Array.from({ length: 3 }, (_, b) => ids[b * 10 + t]);
    let next = paged.prefetch(column(0), [3, 1], { state });
    for (let t = 0; t < 10; t++) {
      const rows = new Float32Array(3 * width);
      for (let b = 0; b < 3; b++) rows.set(hidden.subarray((b * 10 + t) * width, (b * 10 + t + 1) * width), b * width);
      const out = paged.step(state, rows, column(t), { ticket: next });
      if (t + 1 < 10) next = paged.prefetch(column(t + 1), [3, 1], { state });
      for (let b = 0; b < 3; b++) {
        expect(bits(out.output.subarray(b * width, (b + 1) * width)).equals(bits(whole.output.subarray((b * 10 + t) * width, (b * 10 + t + 1) * width)))).toBe(true);
      }
    }
    expect(paged.pagerStats().hotRowHits).toBeGreaterThan(0);
  });

  it('a direct table again after usePager(undefined); loading weights detaches the pager', () => {
    const paged = new Engram(config, { tokenizer, seed: 3 });
    paged.usePager({ tier: 'host', cacheBytes: 2 ** 20 });
    expect(paged.pager).toBeDefined();
    paged.usePager(undefined);
    expect(paged.pager).toBeUndefined();
    expect(() => paged.pagerStats()).toThrow(/no pager/);
    paged.usePager({ tier: 'device' });
    expect(paged.pager).toBeUndefined();
    paged.usePager({ tier: 'host', cacheBytes: 2 ** 23 });
    const { ids: staleIds, hidden: staleHidden, shape: staleShape } = inputs(1, 1, 8);
    const stale = paged.prefetch(staleIds, staleShape);
    paged.loadStateDict(paged.stateDict());
    expect(paged.pager).toBeUndefined();
    // A ticket pinned in the dropped pager is refused with what to do, not a TypeError from inside.
    expect(() => paged.forward(staleHidden, staleIds, staleShape, { ticket: stale })).toThrow(/pinned pages of a pager this layer no longer reads through .*call prefetch\(\) again/);
    paged.usePager({ tier: 'host', cacheBytes: 2 ** 23 });
    const stale2 = paged.prefetch(staleIds, staleShape);
    paged.usePager({ tier: 'host', cacheBytes: 2 ** 23 });
    expect(() => paged.forward(staleHidden, staleIds, staleShape, { ticket: stale2 })).toThrow(/no longer reads through/);
    paged.usePager(undefined);
    // prefetch without a pager still hands over the hashed rows
    const { ids, hidden, shape } = inputs(1, 1, 8);
    const ticket = paged.prefetch(ids, shape);
    expect(ticket.ticket).toBeUndefined();
    expect(bits(paged.forward(hidden, ids, shape, { ticket }).output).equals(bits(paged.forward(hidden, ids, shape).output))).toBe(true);
  });

  it('bad tickets and tier options are clear errors and leave the pages released', async () => {
    const { file } = saved('f32');
    const paged = Engram.fromSafetensors(file, { tokenizer, table: { tier: 'file', cacheBytes: 2 ** 20, pageRows: 16 } });
    const a = inputs(1, 1, 8);
    const b = inputs(2, 1, 8);
    const ticket = paged.prefetch(a.ids, a.shape);
    expect(() => paged.forward(b.hidden, b.ids, b.shape, { ticket })).toThrow(/prefetched for other input ids/);
    expect(() => paged.forward(a.hidden, a.ids, a.shape, { ticket, out: new Float32Array(3) })).toThrow(/options.out/);
    expect(paged.pagerStats().ticketsInFlight).toBe(1); // still the caller's to use
    paged.forward(a.hidden, a.ids, a.shape, { ticket });
    expect(() => paged.forward(a.hidden, a.ids, a.shape, { ticket })).toThrow(/already used/);
    const other = new Engram(config, { tokenizer, seed: 3 });
    expect(() => other.forward(a.hidden, a.ids, a.shape, { ticket: paged.prefetch(a.ids, a.shape) })).toThrow(TypeError);
    expect(paged.pagerStats().ticketsInFlight).toBe(1);
    // Releasing a ticket a running forward took does nothing: the forward gives the pages back.
    const c = inputs(3, 1, 8);
    const taken = paged.prefetch(c.ids, c.shape);
    const running = paged.forwardAsync(c.hidden, c.ids, c.shape, { ticket: taken });
    taken.release();
    await running;
    expect(paged.pagerStats().ticketsInFlight).toBe(1); // the foreign-layer one above, still the caller's
    expect(() => Engram.fromSafetensors(file, { tokenizer, table: { tier: 'disk' as 'file' } })).toThrow(/options.table.tier/);
    expect(() => Engram.fromSafetensors(file, { tokenizer, tableDtype: 'bf16', table: { tier: 'file' } })).toThrow(/reads the table as stored/);
    expect(() => new Engram(config, { tokenizer }).usePager({ tier: 'file' })).toThrow(/fromSafetensors/);
    expect(() => Engram.fromSafetensors(file, { tokenizer, table: { tier: 'file', cacheBytes: 10 } })).toThrow(/smaller than one page/);
  });

  it('EngramModel: one hash and one prefetch for every layer, file tier, same bits as in memory', () => {
    const { layerId: _l, layerIds: _ls, ...rest } = config;
    const model = new EngramModel({ ...rest, layerIds: [1, 4] }, { tokenizer, tableDtype: 'bf16', seed: 5 });
    const file = path.join(dir, 'model.safetensors');
    model.saveSafetensors(file);
    const paged = EngramModel.fromSafetensors(file, { tokenizer, table: { tier: 'file', cacheBytes: 512 * 1024, pageRows: 32 } });
    for (let b = 0; b < 4; b++) {
      const { ids, hidden, shape } = inputs(100 + b, 2, 16);
      const rows = model.hash(ids, shape);
      const ticket = paged.prefetch(ids, shape);
      for (const id of [1, 4]) {
        const want = model.forwardLayer(id, hidden, rows);
        const got = paged.forwardLayer(id, hidden, ticket.rows, { ticket });
        expect(bits(got.output).equals(bits(want.output))).toBe(true);
      }
      ticket.release();
    }
    for (const id of [1, 4]) expect(paged.layer(id).pagerStats().ticketsInFlight).toBe(0);
    const unused = paged.prefetch(inputs(9, 1, 4).ids, [1, 4]);
    unused.release();
    expect(paged.layer(4).pagerStats().ticketsInFlight).toBe(0);
  });
});
