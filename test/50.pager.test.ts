import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { devices, EngramTable, hottestRows, TablePager, type Eviction, type TableDtype } from '../src/index.js';
import { rng } from './helpers/random.js';

const ROWS = 6000;
const COLS = 64;
const tables = new Map<TableDtype, EngramTable>();
function table(dtype: TableDtype): EngramTable {
  if (!tables.has(dtype)) tables.set(dtype, EngramTable.random(ROWS, COLS, dtype, { seed: 7 }));
  return tables.get(dtype)!;
}

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'engram-pager-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** Row ids: uniform, or Zipf(1.1) over a random permutation of the rows. */
function stream(kind: 'uniform' | 'zipf', n: number, seed: number): Int32Array {
  const r = rng(seed);
  if (kind === 'uniform') return Int32Array.from({ length: n }, () => Math.floor(r() * ROWS));
  const weights = Float64Array.from({ length: ROWS }, (_, i) => 1 / (i + 1) ** 1.1);
  const cdf = new Float64Array(ROWS);
  let acc = 0;
  weights.forEach((w, i) => (cdf[i] = acc += w));
  // One fixed permutation: every Zipf stream shares its hot rows.
  const p = rng(99);
  const perm = Int32Array.from({ length: ROWS }, (_, i) => i);
  for (let i = ROWS - 1; i > 0; i--) {
    const j = Math.floor(p() * (i + 1));
    [perm[i], perm[j]] = [perm[j], perm[i]];
  }
  return Int32Array.from({ length: n }, () => {
    const u = r() * acc;
    let lo = 0;
    let hi = ROWS - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cdf[mid] < u) lo = mid + 1;
      else hi = mid;
    }
    return perm[lo];
  });
}

function bits(a: Float32Array): Uint32Array {
  return new Uint32Array(a.buffer, a.byteOffset, a.length);
}

describe('TablePager gathers exactly what the in-memory table gives', () => {
  const pageRows = 50; // 120 pages
  for (const dtype of ['f32', 'bf16', 'f8e4m3'] as TableDtype[]) {
    for (const eviction of ['lru', 'lfu', 'direct'] as Eviction[]) {
      it(`${dtype}, ${eviction}: uniform and Zipf streams, caches from 8 pages to the whole table`, () => {
        const t = table(dtype);
        const pageBytes = pageRows * TablePager.rowBytes(dtype, COLS);
        for (const kind of ['uniform', 'zipf'] as const) {
          for (const pages of [8, 30, 120]) {
            const pager = TablePager.create(t, { cacheBytes: pages * pageBytes, pageRows, eviction });
            const rows = stream(kind, 40 * 6, pages * 31 + (kind === 'zipf' ? 1 : 0));
            for (let b = 0; b < 40; b++) {
              const batch = rows.subarray(b * 6, b * 6 + 6);
              expect(bits(pager.gather(batch))).toEqual(bits(t.gather(batch)));
            }
            const s = pager.stats();
            expect(s.lookups).toBe(240);
            expect(s.pageHits + s.pageMisses).toBe(s.uniquePages);
            expect(s.rowHits + s.rowMisses).toBe(240);
            expect(s.ticketsInFlight).toBe(0);
            if (eviction === 'direct') expect(s.pageHits).toBe(0);
            if (pages === 8 && eviction !== 'direct') expect(s.evictions).toBeGreaterThan(0);
            if (pages === 120) expect(s.evictions).toBe(0);
          }
        }
      });
    }
  }

  it('a cache of one page serves batches that fit in one page, evicting every time the page changes', () => {
    const t = table('bf16');
    const pager = TablePager.create(t, { cacheBytes: 100 * TablePager.rowBytes('bf16', COLS), pageRows: 100 });
    const r = rng(3);
    let changes = 0;
    let last = -1;
    for (let b = 0; b < 30; b++) {
      const page = Math.floor(r() * 5); // few pages: some repeats
      if (page !== last) changes++;
      last = page;
      const batch = Int32Array.from({ length: 9 }, () => page * 100 + Math.floor(r() * 100));
      expect(bits(pager.gather(batch))).toEqual(bits(t.gather(batch)));
    }
    const s = pager.stats();
    expect(s.pageMisses).toBe(changes);
    expect(s.evictions).toBe(changes - 1);
    expect(s.residentPages).toBe(1);
  });

  it('LRU and LFU pick different victims', () => {
    const t = table('f32');
    const run = (eviction: Eviction) => {
      const pager = TablePager.create(t, { cacheBytes: 2 * 10 * COLS * 4, pageRows: 10, eviction });
      for (const page of [0, 0, 0, 1, 2]) pager.gather(Int32Array.of(page * 10));
      pager.resetStats();
      pager.gather(Int32Array.of(0)); // page 0: evicted by LRU (oldest), kept by LFU (most used)
      return pager.stats().pageHits;
    };
    expect(run('lru')).toBe(0);
    expect(run('lfu')).toBe(1);
  });

  it('LFU over more than 2^24 pages (counts in a sketch sized by the cache) keeps the most-used page and counts like the exact one', () => {
    // 2^25 one-row pages of a sparse file: exact counts would take 128 MiB, the sketch 2 MiB.
    const rows = 2 ** 25;
    const file = path.join(tmp, 'sparse-lfu.bin');
    fs.closeSync(fs.openSync(file, 'w'));
    fs.truncateSync(file, rows * 4);
    const home = { path: file, dtype: 'f32' as TableDtype, rows, cols: 1, dataOffset: 0 };
    const run = (eviction: Eviction, base: number) => {
      const pager = TablePager.create(home, { cacheBytes: 2 * 4, pageRows: 1, eviction, simulate: true });
      const look = (ids: Int32Array) => pager.prefetch(ids).release(); // a simulating pager counts, holds no rows
      for (const r of [0, 0, 0, 1, 2]) look(Int32Array.of(base + r * 7919));
      pager.resetStats();
      look(Int32Array.of(base)); // evicted by LRU (oldest), kept by LFU (most used)
      return pager.stats().pageHits;
    };
    for (const base of [0, rows - 20000, 12345678]) {
      expect(run('lru', base)).toBe(0);
      expect(run('lfu', base)).toBe(1);
    }
    // A Zipf-like stream: the sketch's LFU hits as often as LRU or better, as exact LFU does here.
    const r = rng(9);
    const stream = Int32Array.from({ length: 20000 }, () => Math.floor(rows * r() ** 6));
    const hits = (eviction: Eviction) => {
      const pager = TablePager.create(home, { cacheBytes: 512 * 4, pageRows: 1, eviction, simulate: true });
      for (let i = 0; i < stream.length; i += 16) pager.prefetch(stream.subarray(i, i + 16)).release();
      return pager.stats().rowHits;
    };
    expect(hits('lfu')).toBeGreaterThanOrEqual(hits('lru'));
  });

  it('two prefetches in flight over a slow link land both, and a gather waits only on its own', () => {
    const t = table('f32');
    const pager = TablePager.create(t, { cacheBytes: 110 * 50 * COLS * 4, pageRows: 50, bandwidthGBps: 0.05 });
    const a = stream('uniform', 64, 11);
    const b = stream('uniform', 64, 12);
    const ta = pager.prefetch(a);
    const tb = pager.prefetch(b);
    expect(pager.stats().ticketsInFlight).toBe(2);
    expect(bits(pager.gather(b, { ticket: tb }))).toEqual(bits(t.gather(b)));
    expect(bits(pager.gather(a, { ticket: ta }))).toEqual(bits(t.gather(a)));
    const s = pager.stats();
    expect(s.ticketsInFlight).toBe(0);
    expect(s.stallSeconds).toBeGreaterThan(0); // 50 KB at 0.05 GB/s is about 1 ms per page
    expect(() => pager.gather(a, { ticket: ta })).toThrow(/already used or released/);
  });

  it('a cache of one-row pages in sets of 8 ways: batches pinning nearly every slot, two in flight over a slow link, read back exactly', () => {
    // 300 slots: 38 sets, the last of 4 ways. Two tickets hold up to 290 of them, so sets
    // fill with pinned pages and missing pages must go to slots outside their set; pages
    // one ticket is still copying are hit by the other.
    const t = table('f8e4m3');
    const pager = TablePager.create(t, { cacheBytes: 300 * TablePager.rowBytes('f8e4m3', COLS), pageRows: 1, bandwidthGBps: 0.2 });
    expect(pager.slots).toBe(300);
    const rows = stream('zipf', 40 * 300, 31);
    const distinct = (a: Int32Array) => new Set(a).size;
    let at = 0;
    const take = (pages: number) => {
      let end = at;
      while (end < rows.length && distinct(rows.subarray(at, end + 1)) <= pages) end++;
      const batch = rows.subarray(at, end);
      at = end;
      return batch;
    };
    let lookups = 0;
    for (let b = 0; b < 12 && at < rows.length; b++) {
      const a = take(150);
      const c = take(140);
      const ta = pager.prefetch(a);
      const tc = pager.prefetch(c);
      expect(pager.stats().residentPages).toBeLessThanOrEqual(300);
      expect(bits(pager.gather(c, { ticket: tc }))).toEqual(bits(t.gather(c)));
      expect(bits(pager.gather(a, { ticket: ta }))).toEqual(bits(t.gather(a)));
      lookups += a.length + c.length;
    }
    // A batch of exactly as many pages as the cache has slots is still admitted.
    const whole = Int32Array.from({ length: 300 }, (_, i) => i * 17 + 3);
    expect(bits(pager.gather(whole))).toEqual(bits(t.gather(whole)));
    const s = pager.stats();
    expect(s.lookups).toBe(lookups + 300);
    expect(s.pageHits + s.pageMisses).toBe(s.uniquePages);
    expect(s.pageHits).toBeGreaterThan(0);
    expect(s.evictions).toBeGreaterThan(0);
    expect(s.ticketsInFlight).toBe(0);
    expect(s.residentPages).toBe(300);
  });

  it('a cache as large as the table never evicts, with one-row pages too', () => {
    const t = table('bf16');
    for (const eviction of ['lru', 'lfu'] as Eviction[]) {
      const pager = TablePager.create(t, { cacheBytes: ROWS * TablePager.rowBytes('bf16', COLS), pageRows: 1, eviction });
      const rows = stream('uniform', 30 * 500, 41);
      for (let b = 0; b < 30; b++) {
        const batch = rows.subarray(b * 500, b * 500 + 500);
        expect(bits(pager.gather(batch))).toEqual(bits(t.gather(batch)));
      }
      expect(pager.stats().evictions).toBe(0);
      expect(pager.stats().pageMisses).toBe(new Set(rows).size);
    }
  });

  it('waitAsync resolves once the pages landed', async () => {
    const t = table('bf16');
    const pager = TablePager.create(t, { cacheBytes: 2 ** 20, bandwidthGBps: 0.5 });
    const rows = stream('zipf', 300, 5);
    const ticket = pager.prefetch(rows);
    await pager.waitAsync(ticket);
    expect(bits(pager.cache!.gather(ticket.cacheRows))).toEqual(bits(t.gather(rows)));
    ticket.release();
    ticket.release(); // idempotent
    expect(pager.stats().ticketsInFlight).toBe(0);
  });

  it('hottestRows ranks rows by count, ties by the lower row, for Int32Array and BigInt64Array samples', () => {
    const sample = stream('zipf', 20000, 23);
    const counts = new Map<number, number>();
    for (const r of sample) counts.set(r, (counts.get(r) ?? 0) + 1);
    const expected = [...counts].sort((a, b) => b[1] - a[1] || a[0] - b[0]).map(([r]) => BigInt(r));
    // Counts of many sizes, and ties among them (fewer distinct counts than rows).
    expect(new Set(counts.values()).size).toBeGreaterThan(5);
    expect(new Set(counts.values()).size).toBeLessThan(counts.size);
    const all = hottestRows(sample, sample.length);
    expect(all.length).toBe(counts.size);
    expect(Array.from(all).join(',')).toBe(expected.join(','));
    expect(Array.from(hottestRows(BigInt64Array.from(sample, (r) => BigInt(r)), 300)).join(',')).toBe(expected.slice(0, 300).join(','));
    expect(hottestRows(sample, 0).length).toBe(0);
    expect(hottestRows(new Int32Array(0), 5).length).toBe(0);
  });

  it('hot rows stay resident and are served without page copies', () => {
    const t = table('f8e4m3');
    const sample = stream('zipf', 20000, 21);
    const hot = hottestRows(sample, 200);
    const counts = new Map<number, number>();
    for (const r of sample) counts.set(r, (counts.get(r) ?? 0) + 1);
    const sortedCounts = [...counts.values()].sort((x, y) => y - x);
    expect(counts.get(Number(hot[0]))).toBe(sortedCounts[0]);
    expect(counts.get(Number(hot[199]))).toBe(sortedCounts[199]);
    const rowBytes = TablePager.rowBytes('f8e4m3', COLS);
    const pager = TablePager.create(t, { cacheBytes: 200 * rowBytes + 20 * 50 * rowBytes, pageRows: 50, hotRows: 200 });
    expect(pager.slots).toBe(20);
    pager.setHotRows(hot);
    const rows = stream('zipf', 600, 22);
    for (let b = 0; b < 100; b++) {
      const batch = rows.subarray(b * 6, b * 6 + 6);
      expect(bits(pager.gather(batch))).toEqual(bits(t.gather(batch)));
    }
    const s = pager.stats();
    expect(s.hotRowHits).toBeGreaterThan(200);
    const hotSet = new Set(Array.from(hot, Number));
    expect(s.hotRowHits).toBe(Array.from(rows).filter((r) => hotSet.has(r)).length);
  });

  it('EngramTable.copy() holds the same bytes in fresh memory', () => {
    const t = table('f8e4m3');
    const c = t.copy({ threads: 1 });
    expect(c.region.buffer).not.toBe(t.region.buffer);
    expect(Buffer.from(c.data).equals(Buffer.from(t.data))).toBe(true);
    expect(Buffer.from(c.scales!).equals(Buffer.from(t.scales!))).toBe(true);
  });

  it('a simulating pager counts the same hits as a real one', () => {
    const t = table('f32');
    const rows = stream('zipf', 3000, 9);
    const [real, sim] = [false, true].map((simulate) => TablePager.create(t, { cacheBytes: 20 * 50 * COLS * 4, pageRows: 50, eviction: 'lfu', simulate }));
    for (let b = 0; b < 200; b++) {
      const batch = rows.subarray(b * 15, b * 15 + 15);
      real.gather(batch);
      sim.prefetch(batch).release();
    }
    const a = real.stats();
    const b = sim.stats();
    for (const k of ['lookups', 'uniqueRows', 'uniquePages', 'pageHits', 'pageMisses', 'rowHits', 'evictions', 'bytesCopied'] as const) expect(b[k]).toBe(a[k]);
    expect(sim.cache).toBeUndefined();
  });
});

describe('file-backed tables', () => {
  function writeRaw(t: EngramTable, name: string, header = 24): string {
    const file = path.join(tmp, name);
    const scales = t.scales ?? new Uint8Array(0);
    fs.writeFileSync(file, Buffer.concat([Buffer.alloc(header, 0xab), Buffer.from(t.data), Buffer.from(scales)]));
    return file;
  }

  for (const dtype of ['bf16', 'f8e4m3'] as TableDtype[]) {
    it(`${dtype}: a file table 8x larger than the cache reads back exactly`, () => {
      const t = table(dtype);
      const file = writeRaw(t, `t-${dtype}.bin`);
      const home = { path: file, dtype, rows: ROWS, cols: COLS, dataOffset: 24, scalesOffset: 24 + t.data.byteLength };
      const rowBytes = TablePager.rowBytes(dtype, COLS);
      // Default: 4 threads read a prefetch's pages; one thread must give the same bytes.
      const pager = TablePager.create(home, { cacheBytes: Math.ceil((ROWS * rowBytes) / 8), pageRows: 25 });
      const single = TablePager.create(home, { cacheBytes: Math.ceil((ROWS * rowBytes) / 8), pageRows: 25, readThreads: 1 });
      const rows = stream('zipf', 2000, 4);
      for (let b = 0; b < 100; b++) {
        const batch = rows.subarray(b * 20, b * 20 + 20);
        expect(bits(pager.gather(batch))).toEqual(bits(t.gather(batch)));
        expect(bits(single.gather(batch))).toEqual(bits(t.gather(batch)));
      }
      expect(pager.stats().evictions).toBeGreaterThan(0);
      const read = EngramTable.readFile(home, { threads: 1 });
      expect(Buffer.from(read.data).equals(Buffer.from(t.data))).toBe(true);
      if (dtype === 'f8e4m3') expect(Buffer.from(read.scales!).equals(Buffer.from(t.scales!))).toBe(true);
    });
  }

  it('io_uring and pread readers give the same bytes; a file truncated in use fails by name with either', () => {
    const script = path.join(path.dirname(new URL(import.meta.url).pathname), 'helpers', 'file-reads-check.ts');
    const run = (fileReads: string | undefined) => {
      const env = { ...process.env };
      if (fileReads === undefined) delete env.ENGRAM_FILE_READS;
      else env.ENGRAM_FILE_READS = fileReads;
      const out = execFileSync(process.execPath, ['--import', 'tsx', script], { env, encoding: 'utf8' });
      return JSON.parse(out.trim().split('\n').pop()!) as { method: string; exact: boolean; truncated: string; recovered: boolean };
    };
    // Linux with io_uring enabled reads through a ring; elsewhere the pread readers.
    const uringEnabled = process.platform === 'linux' && fs.existsSync('/proc/sys/kernel/io_uring_disabled') && fs.readFileSync('/proc/sys/kernel/io_uring_disabled', 'utf8').trim() === '0';
    const byDefault = run(undefined);
    const forced = run('pread');
    expect(byDefault.method).toBe(uringEnabled ? 'io_uring' : 'pread');
    expect(forced.method).toBe('pread');
    for (const r of [byDefault, forced]) {
      expect(r.exact).toBe(true);
      expect(r.truncated).toMatch(/table file '.*table\.bin' ended early \(truncated while in use\?\)/);
      expect(r.recovered).toBe(true);
    }
  }, 60_000);

  it('a missing or truncated file is a clear error', () => {
    const t = table('f32');
    expect(() => TablePager.create({ path: path.join(tmp, 'nope.bin'), dtype: 'f32', rows: ROWS, cols: COLS, dataOffset: 0 }, { cacheBytes: 2 ** 20 })).toThrow(
      /does not exist/,
    );
    const file = path.join(tmp, 'short.bin');
    fs.writeFileSync(file, Buffer.from(t.data).subarray(0, 1000));
    expect(() => TablePager.create({ path: file, dtype: 'f32', rows: ROWS, cols: COLS, dataOffset: 0 }, { cacheBytes: 2 ** 20 })).toThrow(/truncated: 1000 bytes/);
    expect(() => EngramTable.readFile({ path: file, dtype: 'f32', rows: ROWS, cols: COLS, dataOffset: 0 })).toThrow(/shorter than/);
  });
});

describe('bad input', () => {
  const t = table('f32');
  const page = 50 * COLS * 4;

  it('geometry errors name the option and the value', () => {
    expect(() => TablePager.create(t, { cacheBytes: 2 ** 20, pageRows: 0 })).toThrow(RangeError);
    expect(() => TablePager.create(t, { cacheBytes: 2 ** 20, pageRows: 0 })).toThrow(/options.pageRows/);
    expect(() => TablePager.create(t, { cacheBytes: 2 ** 20, pageBytes: 1000 })).toThrow(/multiple of the 256 bytes/);
    expect(() => TablePager.create(t, { cacheBytes: 100, pageRows: 50 })).toThrow(/smaller than one page/);
    expect(() => TablePager.create(t, { cacheBytes: 2 ** 20, eviction: 'fifo' as Eviction })).toThrow(/options.eviction/);
    expect(() => TablePager.create(t, { cacheBytes: 2 ** 20, bandwidthGBps: -1 })).toThrow(/bandwidthGBps/);
    expect(() => TablePager.create(t, { cacheBytes: 1000, hotRows: 100 })).toThrow(/does not fit/);
    expect(() => TablePager.create(t, { cacheBytes: 2 ** 20, readThreads: 0 })).toThrow(/options.readThreads/);
    // The page table keys pages in 32 bits: a table of more pages asks for larger ones.
    const huge = { path: '-', dtype: 'bf16' as const, rows: 2 ** 32 + 6, cols: 64, dataOffset: 0 };
    expect(() => TablePager.create(huge, { cacheBytes: 2 ** 20, pageRows: 1, simulate: true })).toThrow(
      /4294967302 pages of 1 row\(s\), more than the page table's 2\^32 - 2: use larger pages \(options.pageRows\)/,
    );
    const paged = TablePager.create(huge, { cacheBytes: 2 ** 20, pageRows: 2, simulate: true });
    paged.prefetch(BigInt64Array.of(0n, 2n ** 32n + 5n)).release();
    expect(paged.stats().pageMisses).toBe(2);
  });

  it('a page held by 65,535 tickets in flight (the most a slot counts) refuses one more, naming the page, and works again once they are released', () => {
    const pager = TablePager.create(t, { cacheBytes: 2 * page, pageRows: 50, simulate: true });
    const held = Array.from({ length: 65_535 }, () => pager.prefetch(Int32Array.of(120)));
    expect(() => pager.prefetch(Int32Array.of(0, 120))).toThrow(/page 2 is held by 65535 tickets in flight/);
    // Nothing changed: page 0 was not made resident by the refused batch.
    expect(pager.stats().residentPages).toBe(1);
    for (const h of held) h.release();
    pager.prefetch(Int32Array.of(0, 120)).release();
    expect(pager.stats().residentPages).toBe(2);
  });

  it('a row beyond the table or a batch larger than the cache throws and changes nothing', () => {
    const pager = TablePager.create(t, { cacheBytes: 3 * page, pageRows: 50 });
    pager.gather(Int32Array.of(0, 60));
    const before = pager.stats();
    expect(() => pager.prefetch(Int32Array.of(1, ROWS))).toThrow(/row id 6000 \(lookup 1\) is outside the table's 6000 rows/);
    expect(() => pager.prefetch(BigInt64Array.of(-1n))).toThrow(RangeError);
    expect(() => pager.prefetch(Int32Array.of(0, 100, 200, 300))).toThrow(/3 page slots but this batch needs 4 pages/);
    const held = pager.prefetch(Int32Array.of(0, 100));
    expect(() => pager.prefetch(Int32Array.of(200, 300))).toThrow(/1 slots free or evictable/);
    held.release();
    expect(pager.stats()).toEqual({ ...before, tickets: before.tickets + 1, lookups: before.lookups + 2, uniqueRows: before.uniqueRows + 2,
      uniquePages: before.uniquePages + 2, pageHits: before.pageHits + 1, pageMisses: before.pageMisses + 1, rowHits: before.rowHits + 1,
      rowMisses: before.rowMisses + 1, bytesCopied: before.bytesCopied + page, copySeconds: expect.any(Number), stallSeconds: expect.any(Number),
      rowHitRate: expect.any(Number), pageHitRate: expect.any(Number), residentPages: 3 });
    expect(bits(pager.gather(Int32Array.of(200, 300, 5)))).toEqual(bits(t.gather(Int32Array.of(200, 300, 5))));
  });

  it('a CUDA cache needs a device, an existing home and a known device name', () => {
    expect(() => TablePager.create(t, { cacheBytes: 4 * page, pageRows: 50, device: 'tpu' as 'cuda' })).toThrow(/options.device/);
    expect(() => TablePager.create({ path: '/nope', dtype: 'f32', rows: ROWS, cols: COLS, dataOffset: 0 }, { cacheBytes: 4 * page, pageRows: 50, device: 'cuda' })).toThrow(/does not exist/);
    if (devices().length === 0) expect(() => TablePager.create(t, { cacheBytes: 4 * page, pageRows: 50, device: 'cuda' })).toThrow(/device 'cuda' was requested/);
  });

  it('a ticket dropped without release gives its pages back when collected', () => {
    const script = path.join(__dirname, 'helpers', 'gc-release.ts');
    const out = execFileSync(process.execPath, ['--expose-gc', '--import', 'tsx', script], { encoding: 'utf8' });
    expect(JSON.parse(out.trim().split('\n').at(-1)!)).toEqual({ before: 1, after: 0 });
  });

  it('tickets from another pager or of the wrong type are refused', () => {
    const a = TablePager.create(t, { cacheBytes: 4 * page, pageRows: 50 });
    const b = TablePager.create(t, { cacheBytes: 4 * page, pageRows: 50 });
    const ticket = a.prefetch(Int32Array.of(1));
    expect(() => b.wait(ticket)).toThrow(TypeError);
    expect(() => a.prefetch([1, 2] as unknown as Int32Array)).toThrow(/rowIds must be an Int32Array or BigInt64Array/);
    ticket.release();
  });
});

describe('bounded memory', () => {
  it('a cache whose bookkeeping alone would not fit is refused with its size, before anything is allocated', async () => {
    const fs = await import('node:fs');
    const os = await import('node:os');
    const path = await import('node:path');
    const { writeSafetensors, readSafetensors } = await import('../src/index.js');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'engram-pager-bound-'));
    try {
      const file = path.join(dir, 'big.safetensors');
      // 2e9 one-row pages of 264 bytes, the whole table as cache: 2e9 slots of compact
      // bookkeeping (about 30 GiB) still exceed a quarter of machines up to 128 GiB.
      const rows = 2_000_000_000;
      writeSafetensors(file, {
        'embed.weight': { dtype: 'F8_E4M3', shape: [rows, 256], hole: true },
        'embed.scale': { dtype: 'F8_E8M0', shape: [rows, 8], hole: true },
      });
      const st = readSafetensors(file);
      const home = { path: file, dtype: 'f8e4m3' as const, rows, cols: 256, dataOffset: st.tensors['embed.weight'].fileOffset!, scalesOffset: st.tensors['embed.scale'].fileOffset };
      expect(() => TablePager.create(home, { cacheBytes: rows * 264, pageRows: 1 })).toThrow(
        /a cache of [\d,]+ page slots needs about [\d.]+ GiB of bookkeeping, more than a quarter of this machine's \d+ GiB: use larger pages \(pageRows\) or a smaller cacheBytes/,
      );
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
