// Shared by the benchmarks: results as JSON + Markdown in bench/results/.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const resultsDir = path.join(path.dirname(fileURLToPath(import.meta.url)), 'results');

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
  flushBuffer ??= new Float64Array(32 * 2 ** 20);
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
