// npm run bench:hash — hashing throughput for B x T = 8 x 4096 Brown Corpus tokens with
// the reference's default config (2 layers x 16 heads), against the machine's
// memory-write bound for the same output measured in the same process.
import { CompressedTokenizer, NgramHashMapping, buildInfo, devices } from '../src/index.js';
import { hashThroughput, machineFacts, median, progress, timeRuns } from '../src/core/throughput.js';
import { brownTokens } from './corpus.js';
import { markdownTable, smokeOr, writeResults } from './harness.js';

const B = smokeOr(8, 1);
const T = smokeOr(4096, 256);
const RUNS = smokeOr(9, 1);

const tokenizer = CompressedTokenizer.deepseekV3();
const mapping = new NgramHashMapping({}, tokenizer);
const ids = brownTokens(tokenizer, B * T);
const cols = mapping.headsPerLayer * mapping.config.layerIds.length;
const info = buildInfo();
const facts = machineFacts();

// The bound: writing the same int32 output once (one thread), in this process.
const sink = new Int32Array(B * T * cols);
let value = 0;
const fill = timeRuns(() => sink.fill(++value), RUNS);
const writeBound = (B * T) / fill.medianSeconds;

const rows: Array<{ label: string; threads: number | 'all'; tokensPerSecond: number; medianSeconds: number; samples: number[] }> = [];
for (const threads of [1, info.cpuThreads]) {
  const show = progress(`cpu, ${threads} thread(s): run`);
  const r = hashThroughput(mapping, ids, [B, T], { threads, runs: RUNS, onRun: (i) => show(i, RUNS) });
  rows.push({ label: `cpu (${info.cpuKernel}), ${threads} thread${threads > 1 ? 's' : ''}`, threads, tokensPerSecond: r.tokensPerSecond, medianSeconds: r.medianSeconds, samples: r.samples });
}
if (devices().length > 0) {
  const r = hashThroughput(mapping, ids, [B, T], { device: 'cuda', runs: RUNS });
  rows.push({ label: `cuda ${devices()[0].name} (incl. copies)`, threads: 'all', tokensPerSecond: r.tokensPerSecond, medianSeconds: r.medianSeconds, samples: r.samples });
}

const table = markdownTable(
  ['backend', 'M tokens/s', 'median ms', 'vs write bound'],
  [
    ...rows.map((r) => [r.label, (r.tokensPerSecond / 1e6).toFixed(1), (r.medianSeconds * 1e3).toFixed(2), `${((100 * r.tokensPerSecond) / writeBound).toFixed(0)}%`]),
    ['memory-write bound (Int32Array.fill of the output, 1 thread)', (writeBound / 1e6).toFixed(1), (fill.medianSeconds * 1e3).toFixed(2), '100%'],
  ],
);
const header =
  `# Hashing throughput\n\nhashRows, B x T = ${B} x ${T} Brown Corpus tokens (DeepSeek-V3 tokenizer), default config ` +
  `(layers [${mapping.config.layerIds}], ${mapping.headsPerLayer} heads each), int32 global row ids, median of ${RUNS} runs after 2 warm-ups.\n\n` +
  `Machine: ${facts.cpu}, ${facts.cores} cores, ${facts.memoryGiB} GiB, ${facts.platform}, Node ${facts.node}; CPU loop: ${info.cpuKernel}; ` +
  `CUDA: ${devices().length ? devices()[0].name : `none (${info.deviceUnavailableReason})`}.\n\n`;
console.log(header + table);
writeResults('hash', { benchmark: 'hash', date: new Date().toISOString(), machine: facts, cpuKernel: info.cpuKernel, batch: B, seqLen: T, runs: RUNS, writeBoundTokensPerSecond: writeBound, writeBoundSamples: fill.samples, medianOfFill: median(fill.samples), results: rows }, header + table);
