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
      expect(r.stdout.match(/: ok \(/g)?.length).toBe(7);
    }, 900_000);
  }
});
