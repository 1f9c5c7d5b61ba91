// Run in a child process (test/50), with or without ENGRAM_FILE_READS=pread: a file-tier
// pager over an fp8 table file reads back exactly (one-row and 7-row pages, rows and
// scales), a file truncated under it fails the prefetch by name, and once the file is
// whole again the next batch is exact. Prints JSON.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { EngramTable, TablePager } from '../../src/index.js';
import { rng } from './random.js';

const rows = 5000, cols = 64;
const t = EngramTable.random(rows, cols, 'f8e4m3', { seed: 23 });
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'engram-reads-'));
const file = path.join(dir, 'table.bin');
const whole = Buffer.concat([Buffer.alloc(40, 0xcd), Buffer.from(t.data), Buffer.from(t.scales!)]);
fs.writeFileSync(file, whole);
const home = { path: file, dtype: 'f8e4m3' as const, rows, cols, dataOffset: 40, scalesOffset: 40 + t.data.byteLength };
const same = (a: Float32Array, b: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
const r = rng(5);
let exact = true;
let method = '';
for (const pageRows of [1, 7]) {
  const pager = TablePager.create(home, { cacheBytes: 600 * TablePager.rowBytes('f8e4m3', cols), pageRows });
  method = pager.stats().fileReads;
  for (let b = 0; b < 40; b++) {
    const batch = Int32Array.from({ length: 64 }, () => Math.floor(r() * rows));
    exact &&= same(pager.gather(batch), t.gather(batch));
  }
}
// Truncated while in use: rows past the new end fail by name; whole again, exact again.
const pager = TablePager.create(home, { cacheBytes: 600 * TablePager.rowBytes('f8e4m3', cols), pageRows: 1 });
fs.truncateSync(file, 40 + 100 * 256);
let truncated = '';
try {
  pager.gather(Int32Array.of(4000, 4001, 10));
} catch (e) {
  truncated = (e as Error).message;
}
fs.writeFileSync(file, whole);
const again = Int32Array.of(4000, 4001, 10);
const recovered = same(pager.gather(again), t.gather(again));
fs.rmSync(dir, { recursive: true, force: true });
console.log(JSON.stringify({ method, exact, truncated, recovered }));
