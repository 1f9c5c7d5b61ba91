// Every CPU loop build this machine can run (ENGRAM_CPU_KERNEL caps the run-time pick in a
// child process): the paper layer and V4.1's layer still equal the reference fixtures,
// fp8 MoE experts (one holding a NaN code) give their F32 values' bits, and seeded random
// tables are the same bytes as the widest build's.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

import { buildInfo } from '../src/index.js';
import { randomTablesDigest } from './helpers/random-tables.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const features = buildInfo().cpuFeatures;
const builds = ['baseline', ...(features.includes('avx2') ? ['avx2'] : [])];
if (!features.includes('avx2')) console.log('the avx2 CPU build is not tested here: this CPU or build has no AVX2/FMA');

describe('CPU loop builds below the widest one', () => {
  for (const build of builds) {
    it(`${build}: the layers equal the reference`, () => {
      const out = execFileSync(process.execPath, ['--import', 'tsx', path.join(here, 'helpers', 'cpu-build-check.ts')], {
        env: { ...process.env, ENGRAM_CPU_KERNEL: build },
        encoding: 'utf8',
      });
      const r = JSON.parse(out.trim().split('\n').pop()!) as {
        cpuKernel: string;
        paper: { embeddingsExact: boolean; gates: number; output: number };
        v41: Record<string, { kernel: string; gates: number; output: number }>;
        moeFp8: { sameBits: boolean; nanOutputs: number; tokens: number };
        randomTables: string;
      };
      expect(r.cpuKernel).toBe(build);
      expect(r.paper.embeddingsExact).toBe(true);
      expect(r.paper.gates).toBeLessThan(1e-4);
      expect(r.paper.output).toBeLessThan(1e-4);
      for (const v of Object.values(r.v41)) {
        expect(v.kernel).toBe(build); // no AVX512-BF16 kernel below avx512
        expect(v.gates).toBeLessThan(1e-4);
        expect(v.output).toBeLessThan(1e-4);
      }
      // fp8 experts at decode sizes, one holding an e4m3 NaN code: the F32 weights' bits.
      expect(r.moeFp8.sameBits).toBe(true);
      expect(r.moeFp8.nanOutputs).toBeGreaterThan(0);
      expect(r.moeFp8.nanOutputs).toBeLessThan(r.moeFp8.tokens);
      // Seeded random tables: the bytes this process's widest build writes.
      expect(r.randomTables).toBe(randomTablesDigest());
    }, 120_000);
  }
});

describe('each CPU loop build keeps its own code', () => {
  it('no engram function is left out of line in the per-instruction-set objects (the linker would keep one build\'s copy for all)', () => {
    // A header body (an inline function) that the compiler does not inline into an ISA
    // build is emitted as a weak symbol in each build's object, and the linker keeps the
    // first: the AVX-512 loop then called the baseline copy (the seeded fill did, at a
    // quarter of its speed), or a baseline caller an AVX-512 copy (an illegal instruction
    // on an AVX2 machine). Only EngramError's members (no vector code) may be weak there.
    const root = path.join(here, '..', 'build', 'CMakeFiles');
    const objects = fs
      .readdirSync(root)
      .filter((d) => /^engram_cpu_(baseline|avx2|avx512)\.dir$/.test(d))
      .flatMap((d) => fs.readdirSync(path.join(root, d), { recursive: true }).map((f) => path.join(root, d, String(f))))
      .filter((f) => f.endsWith('.o'));
    expect(objects.length).toBeGreaterThanOrEqual(4); // the baseline build's objects at least
    const leftOut = objects.flatMap((o) =>
      execFileSync('nm', ['-C', '--defined-only', o], { encoding: 'utf8' })
        .split('\n')
        .filter((line) => / [Ww] engram::/.test(line) && !line.includes('engram::EngramError'))
        .map((line) => `${path.relative(root, o)}: ${line.trim()}`),
    );
    expect(leftOut).toEqual([]);
  });
});
