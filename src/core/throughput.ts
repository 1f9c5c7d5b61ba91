// Timing helpers shared by the demo and the benchmarks: warm-up, median of N, machine facts.
import os from 'node:os';

import type { NgramHashMapping } from '../hashing/ngram-hash-mapping.js';

export interface Timing {
  runs: number;
  medianSeconds: number;
  minSeconds: number;
  samples: number[];
}

export function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/** Runs fn `warmup` times untimed, then `runs` times timed. */
export function timeRuns(fn: () => void, runs: number, warmup = 2, onRun?: (i: number) => void): Timing {
  for (let i = 0; i < warmup; i++) fn();
  const samples: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = process.hrtime.bigint();
    fn();
    samples.push(Number(process.hrtime.bigint() - t0) / 1e9);
    onRun?.(i + 1);
  }
  return { runs, medianSeconds: median(samples), minSeconds: Math.min(...samples), samples };
}

export interface HashThroughput extends Timing {
  threads: number | 'all';
  device: 'cpu' | 'cuda';
  tokensPerSecond: number;
}

/** hashRows over all of the mapping's layers, int32 rows: tokens per second. */
export function hashThroughput(
  mapping: NgramHashMapping,
  ids: Int32Array,
  shape: [number, number],
  options: { threads?: number; device?: 'cpu' | 'cuda'; runs?: number; onRun?: (i: number) => void } = {},
): HashThroughput {
  const device = options.device ?? 'cpu';
  // One output buffer for every run, as a runtime reusing its buffers would.
  const out = new Int32Array(shape[0] * shape[1] * mapping.rowsPerToken * mapping.config.layerIds.length);
  const t = timeRuns(
    () => mapping.hashRows(ids, shape, { device, threads: options.threads, output: 'int32', out }),
    options.runs ?? 7,
    2,
    options.onRun,
  );
  return { ...t, threads: options.threads ?? 'all', device, tokensPerSecond: (shape[0] * shape[1]) / t.medianSeconds };
}

export interface MachineFacts {
  cpu: string;
  cores: number;
  memoryGiB: number;
  platform: string;
  node: string;
}

export function machineFacts(): MachineFacts {
  const cpus = os.cpus();
  return {
    cpu: cpus[0]?.model.trim() ?? 'unknown',
    cores: cpus.length,
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    platform: `${process.platform}-${process.arch}`,
    node: process.versions.node,
  };
}

/** A one-line progress indicator on a TTY, silent otherwise. */
export function progress(label: string, stream: NodeJS.WriteStream = process.stderr): (done: number, total: number) => void {
  if (!stream.isTTY) return () => {};
  return (done, total) => {
    // Whole steps as "3/8"; fractions (a table being written) as a percentage.
    const text = Number.isInteger(done) ? `${done}/${total}` : `${((100 * done) / total).toFixed(0)}%`;
    stream.write(`\r${label} ${text}${done === total ? '\n' : ''}`);
  };
}
