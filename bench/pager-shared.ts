// Part of `npm run bench:pager`: one host copy for many processes. Two Node processes
// open the same V4.1 checkpoint (tables memory-mapped, read in place) and gather the same
// 300,000 random rows of each table; /proc/<pid>/smaps_rollup then tells how much of each
// process's resident memory is shared pages of the files (Pss counts a page shared by two
// processes half in each). Run as a child with argv[2] = 'child'.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';

import { DeepseekV41EngramModel } from '../src/index.js';
import { native } from '../src/native/index.js';

export interface SharedCopyResult {
  processes: number;
  rowsPerTable: number;
  /** Per process, kB. */
  rssKiB: number[];
  pssKiB: number[];
  sharedCleanKiB: number[];
}

function rollup(): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of fs.readFileSync('/proc/self/smaps_rollup', 'utf8').split('\n')) {
    const m = /^(\w+):\s+(\d+) kB/.exec(line);
    if (m) out[m[1]] = Number(m[2]);
  }
  return out;
}

async function child(dir: string): Promise<void> {
  const model = DeepseekV41EngramModel.fromCheckpoint(dir, { device: 'cpu' });
  for (const layer of model.layers.values()) {
    let s = 4242;
    const ids = Int32Array.from({ length: 300_000 }, () => {
      s = (Math.imul(s, 1103515245) + 12345) >>> 0;
      return Math.floor((s / 4294967296) * layer.table.rows);
    });
    native().readRows({ ...layer.table.nativeArgs(), rowIds: ids, threads: 1 });
  }
  process.stdout.write(JSON.stringify({ ready: true }) + '\n');
  // Wait until the parent says both are resident, then report (so Pss sees the sharing).
  process.stdin.once('data', () => {
    process.stdout.write(JSON.stringify(rollup()) + '\n');
    process.exit(0);
  });
}

export async function sharedCopyBenchmark(dir: string, processes = 2): Promise<SharedCopyResult> {
  const script = fileURLToPath(import.meta.url);
  const kids = Array.from({ length: processes }, () => spawn(process.execPath, ['--import', 'tsx', script, 'child', dir], { stdio: ['pipe', 'pipe', 'inherit'] }));
  const lines = kids.map((k) => {
    let buffered = '';
    const queue: string[] = [];
    const waiters: Array<(s: string) => void> = [];
    k.stdout.on('data', (d: Buffer) => {
      buffered += d.toString();
      let at: number;
      while ((at = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, at);
        buffered = buffered.slice(at + 1);
        const w = waiters.shift();
        if (w) w(line);
        else queue.push(line);
      }
    });
    return () => new Promise<string>((resolve) => (queue.length ? resolve(queue.shift()!) : waiters.push(resolve)));
  });
  await Promise.all(lines.map((next) => next())); // both ready
  const reports = await Promise.all(kids.map((k, i) => {
    k.stdin.write('report\n');
    return lines[i]().then((s) => JSON.parse(s) as Record<string, number>);
  }));
  return {
    processes,
    rowsPerTable: 300_000,
    rssKiB: reports.map((r) => r.Rss),
    pssKiB: reports.map((r) => r.Pss),
    sharedCleanKiB: reports.map((r) => r.Shared_Clean),
  };
}

if (process.argv[2] === 'child') await child(process.argv[3]);
