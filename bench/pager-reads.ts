// npm run bench:pager-reads — how the file tier reads a prefetch's rows into the cache:
// io_uring (one submission per prefetch, up to 128 reads in flight, from the copy thread)
// against pread on 4 reader threads (the fallback) and on 1, in the same process, pass by
// pass in turn. A table file of DeepSeek-V4.1-shaped rows (256 fp8 codes, and 8 UE8M0
// scales stored apart: two reads a row), one-row pages, direct mode (every row of a batch
// is copied), batches of random rows as a decode step (16 tokens x 24 rows) and a prefill
// (512 tokens x 24 rows) ask for them. Warm: the file in the page cache; cold: after
// drop_caches (root only), the disk's random-read rate with this access pattern. CPU ms:
// the process's user + system time per batch, the cores the copies take from compute.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { buildInfo, TablePager } from '../src/index.js';
import { machineFacts, median, progress } from '../src/core/throughput.js';
import { markdownTable, smokeOr, writeResults } from './harness.js';

const ROWS = smokeOr(2_000_000, 20_000);
const COLS = 256;
const PASSES = smokeOr(Number(process.env.BENCH_RUNS ?? 5), 1);
const BATCHES = { decode: smokeOr(200, 4), prefill: smokeOr(8, 1) };
const LOOKUPS = { decode: 16 * 24, prefill: 512 * 24 };
const log = (s: string) => process.stderr.write(`${s}\n`);

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'engram-reads-bench-'));
const file = path.join(dir, 'table.bin');
{
  log(`writing a ${((ROWS * (COLS + 8)) / 2 ** 20).toFixed(0)} MiB table file`);
  const fd = fs.openSync(file, 'w');
  const chunk = Buffer.alloc(1 << 20);
  for (let i = 0; i < chunk.length; i++) chunk[i] = (i * 37) & 0x77; // finite e4m3 codes and scales
  for (let left = ROWS * (COLS + 8); left > 0; left -= chunk.length) fs.writeSync(fd, chunk, 0, Math.min(left, chunk.length));
  fs.fsyncSync(fd); // dirty pages survive drop_caches: the cold passes need them written
  fs.closeSync(fd);
}
const home = { path: file, dtype: 'f8e4m3' as const, rows: ROWS, cols: COLS, dataOffset: 0, scalesOffset: ROWS * COLS };
const canDropCaches = (() => {
  try {
    fs.accessSync('/proc/sys/vm/drop_caches', fs.constants.W_OK);
    return true;
  } catch {
    return false;
  }
})();
function dropCaches(): void {
  fs.writeFileSync('/proc/sys/vm/drop_caches', '3');
}
function warmFile(): void {
  const fd = fs.openSync(file, 'r');
  const buf = Buffer.alloc(8 << 20);
  while (fs.readSync(fd, buf, 0, buf.length, null) > 0);
  fs.closeSync(fd);
}

interface Mode {
  name: string;
  env: string | undefined;
  readThreads: number;
}
const MODES: Mode[] = [
  { name: 'io_uring (128 in flight, copy thread)', env: undefined, readThreads: 4 },
  { name: 'pread, 4 reader threads', env: 'pread', readThreads: 4 },
  { name: 'pread, 1 thread', env: 'pread', readThreads: 1 },
];

let seed = 1;
function randomRows(n: number): Int32Array {
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    out[i] = Math.floor((seed / 2 ** 32) * ROWS);
  }
  return out;
}

/** µs and CPU µs per batch, the reader's method. */
function timeBatches(mode: Mode, phase: 'decode' | 'prefill'): { us: number; cpuUs: number; method: string } {
  if (mode.env === undefined) delete process.env.ENGRAM_FILE_READS;
  else process.env.ENGRAM_FILE_READS = mode.env;
  const pager = TablePager.create(home, { cacheBytes: 64 * 2 ** 20, pageRows: 1, eviction: 'direct', readThreads: mode.readThreads });
  const batches = Array.from({ length: BATCHES[phase] }, () => randomRows(LOOKUPS[phase]));
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  for (const b of batches) {
    const t = pager.prefetch(b);
    pager.wait(t);
    t.release();
  }
  const ns = Number(process.hrtime.bigint() - t0);
  const cpu = process.cpuUsage(cpu0);
  return { us: ns / 1e3 / batches.length, cpuUs: (cpu.user + cpu.system) / batches.length, method: pager.stats().fileReads };
}

type Cell = { us: number[]; cpuUs: number[]; method: string };
const cells = new Map<string, Cell>();
const states = canDropCaches ? (['warm', 'cold'] as const) : (['warm'] as const);
if (!canDropCaches) log('not root: cold passes skipped (they need /proc/sys/vm/drop_caches)');
const show = progress('  passes');
let done = 0;
const total = PASSES * states.length * 2 * MODES.length;
for (let p = 0; p < PASSES; p++) {
  for (const state of states) {
    for (const phase of ['decode', 'prefill'] as const) {
      for (const mode of MODES) {
        if (state === 'warm') warmFile();
        else dropCaches();
        const r = timeBatches(mode, phase);
        const key = `${state}/${phase}/${mode.name}`;
        const c = cells.get(key) ?? { us: [], cpuUs: [], method: r.method };
        c.us.push(r.us);
        c.cpuUs.push(r.cpuUs);
        cells.set(key, c);
        show(++done, total);
      }
    }
  }
}
delete process.env.ENGRAM_FILE_READS;
fs.rmSync(dir, { recursive: true, force: true });

const facts = machineFacts();
const rows = [...cells.entries()].map(([key, c]) => {
  const [state, phase, mode] = key.split('/');
  const us = median(c.us);
  const lookups = LOOKUPS[phase as 'decode' | 'prefill'];
  return { state, phase, mode, method: c.method, usPerBatch: us, cpuUsPerBatch: median(c.cpuUs), rowsPerSecond: lookups / (us / 1e6), runs: c.us };
});
const json = { benchmark: 'pager-reads', date: new Date().toISOString(), machine: { ...facts, cpuKernel: buildInfo().cpuKernel }, tableRows: ROWS, rowBytes: COLS + 8, lookups: LOOKUPS, batches: BATCHES, passes: PASSES, cold: canDropCaches, rows };
const f = (x: number, d = 0) => x.toFixed(d);
const md = [
  '# File-tier reads: io_uring against pread',
  '',
  `A table file of ${ROWS.toLocaleString()} rows (256 fp8 codes + 8 UE8M0 scales stored apart: two reads a row), one-row pages, direct mode (every row copied), random rows; a decode batch is ${LOOKUPS.decode} rows, a prefill batch ${LOOKUPS.prefill}. Each batch: prefetch, wait, release. Warm: the file in the page cache; cold: after drop_caches (this VM's disk is cached by its host, so "cold" is the host's cache, not a device). Medians of ${PASSES} passes, the modes taking turns within each pass. CPU µs: the process's user + system time per batch.`,
  '',
  `Machine: ${facts.cpu}, ${facts.cores} cores, ${facts.memoryGiB} GiB, ${facts.platform}, Node ${facts.node}; CPU kernel: ${buildInfo().cpuKernel}.`,
  '',
  markdownTable(
    ['page cache', 'batch', 'reads', 'µs per batch', 'rows/s', 'CPU µs per batch'],
    rows.map((r) => [r.state, `${r.phase} (${LOOKUPS[r.phase as 'decode' | 'prefill']} rows)`, `${r.mode}${r.method === 'io_uring' || r.mode.startsWith('pread') ? '' : ` (ran as ${r.method})`}`, f(r.usPerBatch), f(r.rowsPerSecond), f(r.cpuUsPerBatch)]),
  ),
  '',
].join('\n');
writeResults('pager-reads', json, md);
