#!/usr/bin/env node
// npm run bench:smoke — every benchmark at tiny sizes, one timed run each (BENCH_SMOKE=1),
// results in a scratch folder: a check that each runs to the end on this machine and CPU
// build (ENGRAM_CPU_KERNEL caps the build), not a measurement. Exits non-zero on the first
// benchmark that fails or crashes.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const BENCHMARKS = ['hash', 'forward', 'v41', 'moe', 'pager', 'pager-bookkeeping', 'pager-profile', 'pager-reads', 'outputs', 'async-staging', 'gpu'];
const only = process.argv.slice(2);
const results = fs.mkdtempSync(path.join(os.tmpdir(), 'engram-bench-smoke-'));
const cache = process.env.ENGRAM_CACHE_DIR ?? path.join(root, '.cache');
let failed = 0;
try {
  for (const name of only.length > 0 ? only : BENCHMARKS) {
    const t0 = Date.now();
    const args = ['--import', 'tsx', path.join(root, 'bench', `${name}.ts`), ...(name === 'gpu' ? ['--quick', '--no-peer', '--out', results] : [])];
    const r = spawnSync(process.execPath, args, {
      cwd: root,
      env: { ...process.env, BENCH_SMOKE: '1', BENCH_RESULTS_DIR: results, ENGRAM_CACHE_DIR: cache },
      encoding: 'utf8',
      maxBuffer: 64 * 2 ** 20,
    });
    const seconds = ((Date.now() - t0) / 1000).toFixed(1);
    if (r.status === 0) {
      console.log(`bench:smoke ${name}: ok (${seconds} s)`);
    } else {
      failed++;
      console.log(`bench:smoke ${name}: FAILED (${r.signal ?? `exit ${r.status}`}, ${seconds} s)\n${(r.stdout + r.stderr).slice(-4000)}`);
    }
  }
} finally {
  fs.rmSync(results, { recursive: true, force: true });
}
process.exit(failed > 0 ? 1 : 0);
