#!/usr/bin/env node
// npm run bench:summary — one table of every figure in bench/results/*.json: what was
// measured, on which machine and CPU build, the figure, its peer or yardstick measured in
// the same run, and the ratio. Writes bench/results/summary.{md,json}, and docs/performance.md
// with its chart (docs/performance-ratios.svg). `npm run bench` runs every benchmark first,
// then this. BENCH_RESULTS_DIR and DOCS_DIR move the input and the docs output.
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
const machine = (d) => (d?.machine ? `${d.machine.cpu}, ${d.machine.cores} cores, ${d.cpuKernel ?? d.machine.cpuKernel ?? 'CPU build not recorded'}` : 'machine not recorded');
const rows = [];
// ratio: figure / peer, or peer / figure for times (lowerIsBetter): above 1 is better.
const add = (source, d, figure, value, unit, peer, peerValue, lowerIsBetter = false) =>
  rows.push({ source, date: (d?.date ?? '').slice(0, 10), machine: machine(d), figure, value, unit, peer, peerValue, ratio: peerValue ? (lowerIsBetter ? peerValue / value : value / peerValue) : null });

const hash = read('hash.json');
for (const r of hash?.results ?? []) add('hash', hash, `hashRows ${hash.batch} x ${hash.seqLen}, ${r.label}`, r.tokensPerSecond / 1e6, 'M tokens/s', 'write bound of the same output', hash.writeBoundTokensPerSecond / 1e6);
if (hash?.defaultCall) add('hash', hash, `the call a user writes: hash() per layer, ${hash.batch} x ${hash.seqLen}, fresh outputs, synchronous loop`, hash.defaultCall.tokensPerSecond / 1e6, 'M tokens/s', hash.numpy ? `numpy ${hash.numpy.numpy}, the reference's hashing` : 'numpy (not run)', hash.numpy ? hash.numpy.tokensPerSecond / 1e6 : undefined);
if (hash?.defaultCallWithTurns) add('hash', hash, `the call a user writes: hash() per layer, ${hash.batch} x ${hash.seqLen}, fresh outputs, a turn of the event loop between calls`, hash.defaultCallWithTurns.tokensPerSecond / 1e6, 'M tokens/s', hash.numpy ? `numpy ${hash.numpy.numpy}, the reference's hashing` : 'numpy (not run)', hash.numpy ? hash.numpy.tokensPerSecond / 1e6 : undefined);
for (const [name, label] of [['forward.json', ''], ['forward-avx2.json', ' (AVX2 build forced)']]) {
  const forward = read(name);
  const source = name.replace('.json', '');
  for (const r of forward?.results ?? []) {
    add(source, forward, `paper layer ${forward.batch} x ${forward.seqLen}, ${r.table} table${label}`, r.tokensPerSecond, 'tokens/s', 'onnxruntime-node, same layer', r.ortTokensPerSecond);
    add(source, forward, `paper layer projections, ${r.table} table${label}`, r.gemmGflops, 'GFLOP/s', 'measured FMA peak', forward.peakGflops);
    add(source, forward, `paper layer gather (in the GEMM packing), ${r.table} table${label}`, r.packedColdGBps, 'GB/s', 'random rows, cold', r.coldRandomRowGBps);
  }
}
for (const [name, label] of [['v41.json', ''], ['v41-avx2.json', ' (AVX2 build forced)']]) {
  const v = read(name);
  const numpy = v?.numpy;
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
const staging = read('async-staging.json');
for (const r of staging?.rows ?? []) add('async-staging', staging, `${r.call}, plain JS inputs (copied)`, r.userMs, 'ms', 'same call, inputs in the addon\'s memory (pinned)', r.pinnedMs, true);
const remote = read('remote.json');
for (const r of remote?.rows ?? []) {
  if (r.tier === 'ram') continue;
  const ram = remote.rows.find((x) => x.tier === 'ram' && x.phase === r.phase && x.leadMs === r.leadMs);
  add('remote', remote, `V4.1 layer ${r.phase}, table ${r.tier === 'remote' ? 'in a Redis Cluster' : r.tier === 'remote-ioredis' ? 'in a Redis Cluster, read through ioredis alone' : 'in its file'}, prefetch ${r.leadMs} ms ahead`, r.tokensPerSecond, 'tokens/s', 'same layer, table in RAM, same rounds', ram?.tokensPerSecond);
}
const pager = read('pager.json');
for (const r of pager?.file?.rows ?? []) {
  if (r.loss !== null && r.loss !== undefined) add('pager', pager, `pager ${r.mode}, ${r.phase}`, r.tokensPerSecond, 'tokens/s', 'tables in RAM, same run', r.tokensPerSecond / (1 - r.loss));
}
const reads = read('pager-reads.json');
for (const r of reads?.rows ?? []) {
  if (!r.mode.startsWith('io_uring')) continue;
  const pread = reads.rows.find((x) => x.state === r.state && x.phase === r.phase && x.mode === 'pread, 4 reader threads');
  add('pager-reads', reads, `file tier reads through io_uring, ${r.phase} batch of ${reads.lookups[r.phase]} rows, ${r.state} page cache`, r.usPerBatch, 'µs', 'pread on 4 reader threads, same run', pread?.usPerBatch, true);
}
const bookkeeping = read('pager-bookkeeping.json');
for (const r of bookkeeping?.results ?? []) {
  add('pager-bookkeeping', bookkeeping, `pager bookkeeping per looked-up row, one-row pages, ${r.eviction} (no copies)`, r.nsPerRow, 'ns', 'the target per row, not a measurement', bookkeeping.targetNsPerRow, true);
}
if (bookkeeping) add('pager-bookkeeping', bookkeeping, 'pager bookkeeping memory per cache slot', bookkeeping.bytesPerSlot, 'bytes', '', undefined, true);
const profiled = read('pager-profile.json');
const [paged, mapped] = ['paged', 'mapped'].map((m) => profiled?.profiles?.find((p) => p.mode === m));
if (paged && mapped) add('pager-profile', profiled, 'V4.1 decode under perf, file tier, one-row pages, LRU, warm', paged.tokensPerSecond, 'tokens/s', 'same steps, tables mapped (no pager), under perf', mapped.tokensPerSecond);
const ramTiming = profiled?.interleaved?.find((t) => t.mode === 'ram');
for (const t of profiled?.interleaved ?? []) {
  const label = { paged: 'file tier, one-row pages, LRU', mapped: 'tables mapped, no pager, prefetch reads ahead', 'mapped, no prefetch': 'tables mapped, no pager, no prefetch' }[t.mode];
  if (t.mode !== 'ram') add('pager-profile', profiled, `V4.1 decode 16 x 1, ${label}, ${t.cold ? 'cold' : 'warm'} OS page cache, interleaved passes`, t.tokensPerSecond, 'tokens/s', 'tables in RAM, same passes', (profiled.interleaved.find((r) => r.mode === 'ram' && r.cold === t.cold) ?? ramTiming)?.tokensPerSecond);
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

// docs/performance.md: the same figures by subject, each section linked to its full report.
const docsDir = process.env.DOCS_DIR ?? path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'docs');
const SECTIONS = [
  ['Hashing', ['hash'], 'hash.md', 'Row ids per second for the V4.1 hash (`hashRows`), against the rate at which the same output can merely be written.'],
  ["The paper's Engram layer", ['forward', 'forward-avx2'], 'forward.md', 'The whole layer at the reference dimensions against onnxruntime-node running the same layer; its projections against the machine\'s measured FMA peak; its gather against a plain random-row read.'],
  ["DeepSeek-V4.1's Engram layer", ['v41', 'v41-avx2'], 'v41.md', 'The layer at the released dimensions (hidden 5120, hc 4) against numpy + OpenBLAS running the same computation in the same session; the `wkv` projection against the measured peak of the kernel it runs on.'],
  ['Mixture-of-Experts', ['moe', 'moe-avx2'], 'moe.md', 'The expert GEMMs reading quantised codes against F32 experts in the same run (above 1: the quantised format is faster).'],
  ['Fresh outputs (the call a user writes)', ['outputs'], 'outputs.md', 'The default call, which allocates its output, against the same call into a reused output.'],
  ['Async calls: copies of what JS owns', ['async-staging'], 'async-staging.md', 'Async calls copy the plain typed arrays JS owns (JS could detach them mid-call); the same call with its inputs in the addon\'s memory pins them instead. Below 1: what the copies cost (the report also gives their measured time).'],
  ['The remote tier (Redis Cluster)', ['remote'], 'remote.md', 'DeepSeek-V4.1\'s layer with its table in a Redis Cluster on loopback (and in its file), against the table in RAM in the same rounds (below 1: the loss).'],
  ['The table pager', ['pager', 'pager-bookkeeping', 'pager-profile', 'pager-reads'], 'pager.md', 'Decode and prefill with the tables behind the pager against the tables in RAM, interleaved in the same run (below 1: the pager costs that much).'],
];
const rel = (f) => `../bench/results/${f}`;
const doc = [
  '# Performance',
  '',
  '<!-- Generated by `npm run bench:summary` from bench/results/*.json: edit the script, not this file. -->',
  '',
  'Every figure the benchmarks measured, with the machine and the CPU kernel it ran on, and a peer or yardstick measured in the same process and run. Ratio: figure / peer, or peer / figure for times, so **above 1 is better** for us. A figure holds for the CPU it was measured on: the `avx512` rows come from a 2-core AMD EPYC with AVX-512 and AVX512-BF16, the `avx2` rows from the AVX2 build forced on such a machine (`ENGRAM_CPU_KERNEL=avx2`). No figure here was measured on a GPU yet.',
  '',
  '![Ratio of every figure to its peer, on a log scale](performance-ratios.svg)',
  '',
];
for (const [title, sources, report, about] of SECTIONS) {
  const sectionRows = rows.filter((r) => sources.includes(r.source));
  if (sectionRows.length === 0) continue;
  doc.push(`## ${title}`, '', `${about} Full report: [bench/results/${report}](${rel(report)}).`, '');
  doc.push('| figure | value | peer or yardstick | peer | ratio | machine, CPU kernel | date |', '| --- | --- | --- | --- | --- | --- | --- |');
  for (const r of sectionRows) doc.push(`| ${r.figure} | ${fmt(r.value)} ${r.unit} | ${r.peer || '–'} | ${r.peerValue ? `${fmt(r.peerValue)} ${r.unit}` : '–'} | ${r.ratio === null ? '–' : `${fmt(r.ratio)}x`} | ${r.machine} | ${r.date} |`);
  doc.push('');
  if (sources.includes('pager') && fs.existsSync(path.join(dir, 'pager-hit-rate.svg'))) doc.push('![Hit rate of a row cache against its size](../bench/results/pager-hit-rate.svg)', '');
}
doc.push('## Reproducing', '', '`npm run bench` runs every benchmark on this machine and rewrites `bench/results/` and this page; `npm run bench:<name>` runs one (`hash`, `forward`, `v41`, `moe`, `pager`, `outputs`, `async`, `remote`, `gpu`). Each report names its machine, CPU kernel and peers.', '');
fs.mkdirSync(docsDir, { recursive: true });
fs.writeFileSync(path.join(docsDir, 'performance.md'), doc.join('\n'));
fs.writeFileSync(path.join(docsDir, 'performance-ratios.svg'), ratioChart(rows.filter((r) => r.ratio !== null && r.ratio > 0)));
console.log(`bench:summary: ${path.join(docsDir, 'performance.md')}`);

// A horizontal bar per figure, log2 of its ratio from a centre line at 1x.
function ratioChart(items) {
  const esc = (t) => t.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
  const labelW = 560;
  const plotW = 420;
  const rowH = 18;
  const top = 40;
  const span = Math.max(2, ...items.map((r) => Math.ceil(Math.abs(Math.log2(r.ratio)))));
  const x = (ratio) => labelW + plotW / 2 + (Math.log2(ratio) / span) * (plotW / 2);
  const height = top + items.length * rowH + 30;
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${labelW + plotW + 70}" height="${height}" font-family="sans-serif" font-size="11">`,
    `<text x="8" y="18" font-size="13" font-weight="bold">Each figure against its peer from the same run (log scale; right of 1x is better)</text>`,
  ];
  for (let k = -span; k <= span; k++) {
    const gx = x(2 ** k);
    out.push(`<line x1="${gx}" y1="${top - 6}" x2="${gx}" y2="${height - 24}" stroke="${k === 0 ? '#333' : '#ddd'}"/>`, `<text x="${gx}" y="${height - 10}" text-anchor="middle" fill="#555">${2 ** k >= 1 ? 2 ** k : `1/${2 ** -k}`}x</text>`);
  }
  items.forEach((r, i) => {
    const y = top + i * rowH;
    const label = `${r.source}: ${r.figure}`;
    const x0 = x(1);
    const x1 = x(r.ratio);
    out.push(
      `<text x="${labelW - 6}" y="${y + 12}" text-anchor="end">${esc(label.length > 92 ? `${label.slice(0, 90)}…` : label)}</text>`,
      `<rect x="${Math.min(x0, x1)}" y="${y + 3}" width="${Math.max(1, Math.abs(x1 - x0))}" height="${rowH - 6}" fill="${r.ratio >= 1 ? '#3b75af' : '#d9822b'}"/>`,
      `<text x="${Math.max(x0, x1) + 4}" y="${y + 12}" fill="#333">${fmt(r.ratio)}x</text>`,
    );
  });
  out.push('</svg>', '');
  return out.join('\n');
}
