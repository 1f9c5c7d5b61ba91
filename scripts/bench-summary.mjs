#!/usr/bin/env node
// npm run bench:summary — one table of every figure in bench/results/*.json: what was
// measured, on which machine and CPU build, the figure, its peer or yardstick measured in
// the same run, and the ratio. Writes bench/results/summary.{md,json}. `npm run bench`
// runs every benchmark first, then this.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const dir = process.env.BENCH_RESULTS_DIR ?? path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'bench', 'results');
const read = (name) => {
  try {
    return JSON.parse(fs.readFileSync(path.join(dir, name), 'utf8'));
  } catch {
    return undefined;
  }
};
const machine = (d) => (d?.machine ? `${d.machine.cpu}, ${d.machine.cores} cores, ${d.cpuKernel ?? d.machine.cpuKernel ?? '?'}` : '?');
const rows = [];
// ratio: figure / peer, or peer / figure for times (lowerIsBetter): above 1 is better.
const add = (source, d, figure, value, unit, peer, peerValue, lowerIsBetter = false) =>
  rows.push({ source, date: (d?.date ?? '').slice(0, 10), machine: machine(d), figure, value, unit, peer, peerValue, ratio: peerValue ? (lowerIsBetter ? peerValue / value : value / peerValue) : null });

const hash = read('hash.json');
for (const r of hash?.results ?? []) add('hash', hash, `hashRows ${hash.batch} x ${hash.seqLen}, ${r.label}`, r.tokensPerSecond / 1e6, 'M tokens/s', 'write bound of the same output', hash.writeBoundTokensPerSecond / 1e6);
const forward = read('forward.json');
for (const r of forward?.results ?? []) {
  add('forward', forward, `paper layer ${forward.batch} x ${forward.seqLen}, ${r.table} table`, r.tokensPerSecond, 'tokens/s', 'onnxruntime-node, same layer', r.ortTokensPerSecond);
  add('forward', forward, `paper layer projections, ${r.table} table`, r.gemmGflops, 'GFLOP/s', 'measured FMA peak', forward.peakGflops);
  add('forward', forward, `paper layer gather (in the GEMM packing), ${r.table} table`, r.packedColdGBps, 'GB/s', 'random rows, cold', r.coldRandomRowGBps);
}
for (const [name, label] of [['v41.json', ''], ['v41-avx2.json', ' (AVX2 build forced)']]) {
  const v = read(name);
  const numpy = name === 'v41.json' ? v?.numpy : read('v41-numpy-avx2.json');
  for (const r of v?.results ?? []) {
    add(name.replace('.json', ''), v, `V4.1 layer ${r.shape}${label}`, r.tokensPerSecond, 'tokens/s', r.shape === '1 x 1024' && numpy ? numpy.peer : '', r.shape === '1 x 1024' ? numpy?.tokens_per_second : undefined);
    add(name.replace('.json', ''), v, `V4.1 wkv ${r.shape}${label}`, r.wkvGflops, 'GFLOP/s', 'measured peak of its kernel', v.peakGflops);
  }
}
for (const [name, label] of [['moe.json', ''], ['moe-avx2.json', ' (AVX2 build forced)']]) {
  const m = read(name);
  const f32 = m?.formats?.find((f) => f.format === 'f32');
  for (const f of m?.formats ?? []) add(name.replace('.json', ''), m, `MoE experts decode ${m.decodeTokens} tokens, ${f.format}${label}`, f.decodeMs, 'ms', 'F32 experts, same run', f32?.decodeMs, true);
}
const outputs = read('outputs.json');
for (const r of outputs?.rows ?? []) add('outputs', outputs, r.call, r.defaultMs, 'ms', 'same call into a reused output', r.reusedMs, true);
const pager = read('pager.json');
for (const r of pager?.file?.rows ?? []) {
  if (r.loss !== null && r.loss !== undefined) add('pager', pager, `pager ${r.mode}, ${r.phase}`, r.tokensPerSecond, 'tokens/s', 'tables in RAM, same run', r.tokensPerSecond / (1 + r.loss));
}

const fmt = (x) => (x === undefined || x === null ? '–' : Math.abs(x) >= 100 ? x.toFixed(0) : Math.abs(x) >= 1 ? x.toFixed(2) : x.toPrecision(3));
const md = [
  '# Benchmark summary',
  '',
  'Every figure in `bench/results/*.json`, with the machine and CPU build it was measured on, and its peer or yardstick from the same run (ratio: figure / peer; for times, peer / figure, so above 1 is better). Written by `npm run bench:summary`.',
  '',
  '| source | date | machine, CPU build | figure | value | unit | peer or yardstick | peer | ratio |',
  '| --- | --- | --- | --- | --- | --- | --- | --- | --- |',
  ...rows.map((r) => `| ${r.source} | ${r.date} | ${r.machine} | ${r.figure} | ${fmt(r.value)} | ${r.unit} | ${r.peer || '–'} | ${fmt(r.peerValue)} | ${r.ratio === null ? '–' : `${fmt(r.ratio)}x`} |`),
  '',
].join('\n');
fs.writeFileSync(path.join(dir, 'summary.md'), md);
fs.writeFileSync(path.join(dir, 'summary.json'), JSON.stringify(rows, null, 1) + '\n');
console.log(`bench:summary: ${rows.length} figures -> ${path.join(dir, 'summary.md')}`);
