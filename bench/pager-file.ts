// Part of `npm run bench:pager`: DeepSeek-V4.1's two Engram layers (released width:
// D 5120, hc 4, 24 fp8 rows of 264 bytes per token) with their tables in a file several
// times larger than the cache, against the same layers with the tables in RAM. Decode
// (16 sequences, one token each) and prefill (one sequence of 512 tokens), Brown Corpus
// ids. Each step prefetches both layers' rows when it starts: layer 1 waits for its
// copies, layer 14's copies overlap layer 1's compute (prefetch one layer ahead).
import fs from 'node:fs';
import path from 'node:path';

import { DeepseekV41EngramModel, MappedFile, type Eviction } from '../src/index.js';
import { native } from '../src/native/index.js';
import { median, progress } from '../src/core/throughput.js';
import { brownTokens } from './corpus.js';
import { synthCheckpointInChild } from './harness.js';

export interface FileTierRow {
  mode: string;
  phase: 'decode' | 'prefill';
  /** null: one step needs more pages than the cache holds. */
  tokensPerSecond: number | null;
  /** Throughput lost against the in-RAM tables: 1 - tps / tpsRam. */
  loss: number | null;
  /** Share of the step spent waiting for copies. */
  stallShare: number | null;
  rowHitRate: number | null;
  bytesCopiedPerToken: number | null;
  /** Unique rows / lookups per step (after hot rows). */
  uniqueShare?: number | null;
  /** Each pair's loss (1 - its paged / in-RAM ratio), in pair order: the spread behind `loss`. */
  pairLosses?: number[];
}

const log = (s: string) => process.stderr.write(`${s}\n`);

export function fileTierBenchmark(options: { rowsScale: number; cacheBytesPerLayer: number; steps: number; pairs: number; device?: 'cpu' | 'cuda'; hiddenSize?: number }) {
  // 'cuda' (where a GPU is visible): the baseline keeps whole tables in device memory,
  // the modes a device cache fed over PCIe from pinned host memory or from the file.
  const device = options.device ?? 'cpu';
  const dir = path.join(process.env.ENGRAM_CACHE_DIR ?? '.cache', `bench-pager-v41-${options.rowsScale}${options.hiddenSize ? `-d${options.hiddenSize}` : ''}`);
  if (!fs.existsSync(path.join(dir, 'model.safetensors.index.json'))) {
    log(`writing a synthetic V4.1 checkpoint (rows x ${options.rowsScale}) to ${dir}...`);
    synthCheckpointInChild(dir, { rowsScale: options.rowsScale, hiddenSize: options.hiddenSize });
  }
  const files = fs.readdirSync(dir).filter((f) => f.endsWith('.safetensors')).map((f) => path.join(dir, f));
  const fileBytes = files.reduce((n, f) => n + fs.statSync(f).size, 0);
  // The baseline: the tables copied into this process's memory (not the page cache).
  log('  copying the tables into RAM...');
  const copying = progress('  copying a table into RAM');
  const copyStart = Date.now();
  const probe = DeepseekV41EngramModel.fromCheckpoint(dir, {
    device,
    table: { tier: 'host', copy: true, onProgress: (done, total) => copying(done === total ? 1 : done / total, 1) },
  });
  log(`  copied in ${((Date.now() - copyStart) / 1000).toFixed(0)} s`);
  const tableBytes = [...probe.layers.values()].reduce((n, l) => n + l.table.byteLength, 0);
  const { hiddenSize: D, hcMult: hc } = probe.layers.get(1)!.config;
  const tokenizer = probe.hashMapping.tokenizer;
  const corpus = brownTokens(tokenizer, 128 * 1024);
  let at = 0; // every run reads text no earlier run read (so a cold run meets cold rows)
  let seed = 7;
  const random = (n: number) => Float32Array.from({ length: n }, () => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return (seed / 4294967296) * 2 - 1;
  });

  const phases = [
    { phase: 'decode' as const, B: 16, S: 1 },
    { phase: 'prefill' as const, B: 1, S: 512 },
  ];
  const inputs = new Map(phases.map((p) => [p.phase, { streams: new Map([1, 14].map((id) => [id, random(p.B * p.S * hc * D)])) }]));

  // Prefill steps are 512 tokens (about a second each here), so a pass of 3 measures it as
  // steadily as 48 decode steps do decode; 6 had made prefill two thirds of the run.
  const prefillSteps = Math.max(2, Math.floor(options.steps / 16));
  const stepsOf = (phase: (typeof phases)[number]) => (phase.phase === 'decode' ? options.steps : prefillSteps);
  const pagedModel = (model: DeepseekV41EngramModel) => [...model.layers.values()].every((l) => l.pager !== undefined);

  /** One pass of `steps` steps: tokens/s and the share of it spent waiting for copies. */
  function pass(model: DeepseekV41EngramModel, phase: (typeof phases)[number], beforePass?: () => void) {
    const { B, S } = phase;
    const { streams } = inputs.get(phase.phase)!;
    const tokensPerStep = B * S;
    const steps = stepsOf(phase);
    const paged = pagedModel(model);
    if (paged) for (const l of model.layers.values()) l.resetPagerStats();
    beforePass?.();
    const t0 = process.hrtime.bigint();
    for (let s = 0; s < steps; s++) {
      const ids = new Int32Array(tokensPerStep);
      for (let i = 0; i < tokensPerStep; i++) ids[i] = corpus[at++ % corpus.length];
      const ticket = model.prefetch(ids, [B, S]);
      model.forward(streams, ids, [B, S], { ticket });
    }
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    const stall = paged ? [...model.layers.values()].reduce((n, l) => n + l.pagerStats().stallSeconds, 0) / seconds : 0;
    return { tps: (steps * tokensPerStep) / seconds, stall };
  }

  const ramPasses = new Map<string, number[]>(phases.map((p) => [p.phase, []]));

  /**
   * Pairs of passes, one of the paged model and one of the in-RAM one back to back (which
   * goes first alternates; the first pair warms up), so that both see the same state of
   * this shared machine. The loss is 1 - the median of the pairs' ratios: a pair is
   * adjacent in time, so a slow spell of the machine weighs on both of its passes.
   */
  function compare(model: DeepseekV41EngramModel, phase: (typeof phases)[number], label: string, beforePass?: () => void) {
    const show = progress(`  ${label}, ${phase.phase}`);
    const paged: Array<{ tps: number; stall: number }> = [];
    const ram: number[] = [];
    const pairs = options.pairs + 1;
    for (let i = 0; i < pairs; i++) {
      let r: number;
      let p: { tps: number; stall: number };
      if (i % 2 === 0) {
        r = pass(probe, phase).tps;
        p = pass(model, phase, beforePass);
      } else {
        p = pass(model, phase, beforePass);
        r = pass(probe, phase).tps;
      }
      if (i > 0) {
        ram.push(r);
        paged.push(p);
      }
      show(i + 1, pairs);
    }
    ramPasses.get(phase.phase)!.push(...ram);
    const tps = median(paged.map((x) => x.tps));
    const pairLosses = paged.map((x, i) => 1 - x.tps / ram[i]);
    const loss = 1 - median(paged.map((x, i) => x.tps / ram[i]));
    if (!pagedModel(model)) {
      return { tokensPerSecond: tps, loss, pairLosses, stallShare: null, uniqueShare: null, rowHitRate: null, bytesCopiedPerToken: null };
    }
    const stats = [...model.layers.values()].map((l) => l.pagerStats()); // the last pass
    const lookups = stats.reduce((n, s) => n + s.lookups, 0);
    const tokensPerPass = stepsOf(phase) * phase.B * phase.S;
    return {
      tokensPerSecond: tps,
      loss,
      pairLosses,
      stallShare: median(paged.map((x) => x.stall)),
      uniqueShare: stats.reduce((n, s) => n + s.uniqueRows, 0) / lookups,
      rowHitRate: stats.reduce((n, s) => n + s.rowHits, 0) / lookups,
      bytesCopiedPerToken: stats.reduce((n, s) => n + s.bytesCopied, 0) / tokensPerPass,
    };
  }

  const rows: FileTierRow[] = [];
  // The host's random-row read time (one thread), for the GPU model's calibration.
  const table = probe.layers.get(1)!.table;
  let rs = 99;
  const randomRows = Int32Array.from({ length: 200_000 }, () => {
    rs = (Math.imul(rs, 1103515245) + 12345) >>> 0;
    return Math.floor((rs / 4294967296) * table.rows);
  });
  const readTimes: number[] = [];
  for (let i = 0; i < 5; i++) {
    const t0 = process.hrtime.bigint();
    native().readRows({ ...table.nativeArgs(), rowIds: randomRows, threads: 1 });
    readTimes.push(Number(process.hrtime.bigint() - t0) / randomRows.length);
  }
  const hostRowReadNs = median(readTimes);

  // tier 'mapped': no pager at all, the layers gathering straight from the checkpoint's
  // file mapping (what fromCheckpoint does by default), for the warm-cache comparison.
  type Mode = { mode: string; tier: 'host' | 'file' | 'mapped'; pageRows?: number; eviction?: Eviction; cold: boolean };
  const modes: Mode[] =
    device === 'cuda'
      ? [
          { mode: 'CUDA: device cache, one-row pages, LRU, from pinned host RAM', tier: 'host', pageRows: 1, eviction: 'lru', cold: false },
          { mode: 'CUDA: direct (no reuse), from pinned host RAM (the paper)', tier: 'host', pageRows: 1, eviction: 'direct', cold: false },
          { mode: 'CUDA: device cache, one-row pages, LRU, from the file', tier: 'file', pageRows: 1, eviction: 'lru', cold: false },
        ]
      : [
          { mode: 'tables mapped from the files (no pager), warm OS cache', tier: 'mapped', cold: false },
          { mode: 'file tier, one-row pages, LRU, warm OS cache', tier: 'file', pageRows: 1, eviction: 'lru', cold: false },
          { mode: 'file tier, one-row pages, direct (no reuse)', tier: 'file', pageRows: 1, eviction: 'direct', cold: false },
          { mode: 'file tier, 64 KiB pages, LRU, warm OS cache', tier: 'file', pageRows: Math.floor((64 * 1024) / 264), eviction: 'lru', cold: false }, // 264 B: a V4.1 row with its scales
          { mode: 'file tier, one-row pages, LRU, cold (disk)', tier: 'file', pageRows: 1, eviction: 'lru', cold: true },
        ];
  for (const m of modes) {
    const model =
      m.tier === 'mapped'
        ? DeepseekV41EngramModel.fromCheckpoint(dir, { device })
        : DeepseekV41EngramModel.fromCheckpoint(dir, {
            device,
            table: { tier: m.tier, cacheBytes: options.cacheBytesPerLayer, pageRows: m.pageRows, eviction: m.eviction },
          });
    for (const phase of phases) {
      // Cold: the OS forgets the table files before every pass of this mode.
      const drop = m.cold ? () => files.forEach((f) => MappedFile.dropPageCache(f)) : undefined;
      try {
        rows.push({ mode: m.mode, phase: phase.phase, ...compare(model, phase, m.mode, drop) });
      } catch (err) {
        if (!(err instanceof RangeError)) throw err;
        log(`  ${m.mode}, ${phase.phase}: ${err.message}`);
        rows.push({ mode: m.mode, phase: phase.phase, tokensPerSecond: null, loss: null, stallShare: null, rowHitRate: null, bytesCopiedPerToken: null });
      }
    }
  }
  // The in-RAM rows: every RAM pass run beside the modes.
  for (const phase of [...phases].reverse()) {
    const all = ramPasses.get(phase.phase)!;
    rows.unshift({ mode: device === 'cuda' ? 'CUDA: whole tables in device memory (no pager)' : 'tables in RAM (no pager)', phase: phase.phase, tokensPerSecond: median(all), loss: null, stallShare: 0, rowHitRate: null, bytesCopiedPerToken: null });
  }
  return {
    dir,
    rowsScale: options.rowsScale,
    fileBytes,
    tableBytes,
    cacheBytesPerLayer: options.cacheBytesPerLayer,
    steps: options.steps,
    prefillSteps,
    pairs: options.pairs,
    device,
    hostRowReadNs,
    hidden: D,
    hc,
    rows,
  };
}
