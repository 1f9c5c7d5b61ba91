// Shared by the benchmarks: results as JSON + Markdown in bench/results/.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * BENCH_SMOKE=1: every benchmark at tiny sizes with one timed run, results written to a
 * scratch folder (BENCH_RESULTS_DIR, else a temp one), never bench/results/. `npm run
 * bench:smoke` runs them all; a test runs that under every CPU build this CPU has, so every
 * native path a benchmark reaches runs in CI.
 */
export const SMOKE = process.env.BENCH_SMOKE === '1';
/** `full` normally, `small` in smoke mode. */
export const smokeOr = <T>(full: T, small: T): T => (SMOKE ? small : full);

export const resultsDir =
  process.env.BENCH_RESULTS_DIR ??
  (SMOKE ? fs.mkdtempSync(path.join(os.tmpdir(), 'engram-bench-smoke-')) : path.join(path.dirname(fileURLToPath(import.meta.url)), 'results'));

export function writeResults(name: string, json: unknown, markdown: string): void {
  fs.mkdirSync(resultsDir, { recursive: true });
  fs.writeFileSync(path.join(resultsDir, `${name}.json`), JSON.stringify(json, null, 1) + '\n');
  fs.writeFileSync(path.join(resultsDir, `${name}.md`), markdown);
}

export function markdownTable(header: string[], rows: Array<Array<string | number>>): string {
  const line = (cells: Array<string | number>) => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n') + '\n';
}

// Scratch larger than this machine's caches, written before each cold run.
let flushBuffer: Float64Array | undefined;

/**
 * Median seconds of `fn` over `runs` runs, each after writing 256 MiB of other memory:
 * the rows it reads, and the page-table entries that map them, are then out of every
 * cache, as a layer's gather finds them after its GEMM has streamed its weights.
 */
export function coldRowReads(fn: () => void, runs: number): number {
  flushBuffer ??= new Float64Array(smokeOr(32, 1) * 2 ** 20);
  const samples: number[] = [];
  for (let i = 0; i < runs; i++) {
    flushBuffer.fill(i);
    const t0 = process.hrtime.bigint();
    fn();
    samples.push(Number(process.hrtime.bigint() - t0) / 1e9);
  }
  samples.sort((a, b) => a - b);
  return samples[Math.floor(samples.length / 2)];
}
