// Every benchmark runs to the end (npm run bench:smoke: tiny sizes, one run) under each CPU
// build this CPU has, so any native path a benchmark reaches is exercised on every build:
// a buffer sized for one build's row block and walked with another's crashed AVX2
// machines in bench:forward and bench:v41 before.
import { spawnSync } from 'node:child_process';
import path from 'node:path';

import { describe, expect, it } from 'vitest';

import { buildInfo } from '../src/index.js';

const root = path.resolve(import.meta.dirname, '..');
const features = buildInfo().cpuFeatures;
const builds = ['baseline', ...(features.includes('avx2') ? ['avx2'] : []), ...(features.includes('avx512') ? ['avx512'] : [])];

describe('npm run bench:smoke', () => {
  for (const build of builds) {
    it(`every benchmark completes with ENGRAM_CPU_KERNEL=${build}`, () => {
      const r = spawnSync(process.execPath, [path.join(root, 'scripts/bench-smoke.mjs')], {
        cwd: root,
        env: { ...process.env, ENGRAM_CPU_KERNEL: build },
        encoding: 'utf8',
      });
      expect(r.status, r.stdout + r.stderr).toBe(0);
      expect(r.stdout.match(/: ok \(/g)?.length).toBe(11);
    }, 900_000);
  }
});

describe('npm run bench:summary', () => {
  it('tabulates every committed figure with its peer and ratio', async () => {
    const fs = await import('node:fs');
    const os = await import('node:os');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'engram-summary-'));
    try {
      fs.cpSync(path.join(root, 'bench', 'results'), dir, { recursive: true });
      const r = spawnSync(process.execPath, [path.join(root, 'scripts/bench-summary.mjs')], { env: { ...process.env, BENCH_RESULTS_DIR: dir, DOCS_DIR: path.join(dir, 'docs') }, encoding: 'utf8' });
      expect(r.status, r.stderr).toBe(0);
      const rows = JSON.parse(fs.readFileSync(path.join(dir, 'summary.json'), 'utf8')) as Array<{ figure: string; value: number; ratio: number | null }>;
      expect(rows.length).toBeGreaterThanOrEqual(30);
      for (const row of rows) expect(Number.isFinite(row.value), row.figure).toBe(true);
      expect(rows.some((row) => row.ratio !== null && row.ratio > 0)).toBe(true);
      expect(fs.readFileSync(path.join(dir, 'summary.md'), 'utf8')).toMatch(/^\| source \| date \| machine, CPU build \|/m);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
