// Shared by the benchmarks: results as JSON + Markdown in bench/results/.
import { spawnSync } from 'node:child_process';
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

/**
 * The machine's FMA peak (GFLOP/s) for `threads` threads (0: all): the best of three short
 * measurements. A ceiling is best estimated by its highest reading: one 0.5 s measurement
 * on this VM read anywhere from 232 to 285 GFLOP/s within an hour.
 */
export function measuredPeakGflops(measure: (seconds: number) => number): number {
  return Math.max(...[0, 1, 2].map(() => measure(smokeOr(0.5, 0.05))));
}

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

/**
 * Writes a synthetic V4.1 checkpoint in a child process (`engram v41 synth`, progress on a
 * TTY): writing gigabytes of tables leaves this much garbage behind in the writing process
 * that a benchmark copying the tables into RAM afterwards ran a 24 GiB machine out of memory.
 */
export function synthCheckpointInChild(dir: string, options: { rowsScale: number; hiddenSize?: number }): void {
  const started = performance.now();
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
  const args = ['--import', 'tsx', path.join(root, 'src', 'cli', 'main.ts'), 'v41', 'synth', dir, '--rows-scale', String(options.rowsScale)];
  if (options.hiddenSize !== undefined) args.push('--hidden', String(options.hiddenSize));
  const r = spawnSync(process.execPath, args, { cwd: root, stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.status !== 0) throw new Error(`engram v41 synth ${dir} failed (${r.signal ?? `exit ${r.status}`})`);
  synthSeconds += (performance.now() - started) / 1000;
}

/** Seconds this process has spent writing synthetic checkpoints (synthCheckpointInChild). */
export let synthSeconds = 0;
