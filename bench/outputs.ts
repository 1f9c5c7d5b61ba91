// npm run bench:outputs — what a fresh output costs the call a user writes. The default
// call (no `out`) gets a new output every time; this measures it against the same call
// into a reused output, in the same process, for hashing and the paper's layer, and the
// first write of a fresh library output against a plain typed array. The gap is page
// faults: a fresh buffer's pages fault in 4 KiB at a time; the library recycles outputs.
import { buildInfo, CompressedTokenizer, Engram, NgramHashMapping } from '../src/index.js';
import { native } from '../src/native/index.js';
import { machineFacts } from '../src/core/throughput.js';
import { markdownTable, smokeOr, writeResults } from './harness.js';

const RUNS = smokeOr(Number(process.env.BENCH_RUNS ?? 9), 1);
const WARM_CALLS = smokeOr(32, 1);
const info = buildInfo();
const facts = machineFacts();
const log = (s: string) => process.stderr.write(`${s}\n`);
const rows: Array<{ call: string; outputMiB: number; defaultMs: number; defaultSyncMs: number; reusedMs: number; ratio: number }> = [];
const turn = () => new Promise<void>((resolve) => setImmediate(resolve));
const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];
/**
 * The default call (a fresh output each time) and the same call into a reused output,
 * interleaved, each run followed by a turn of the event loop, as a server's loop gives
 * one (outputs JS let go return to the library's pool there); and the default call in a
 * tight synchronous loop, where they cannot.
 */
const record = async (call: string, bytes: number, fresh: () => void, reused: () => void) => {
  const d: number[] = [], r: number[] = [], sync: number[] = [];
  const time = (f: () => void) => {
    const t0 = performance.now();
    f();
    return performance.now() - t0;
  };
  // The tight loop first, before this call's warm-up: what a synchronous loop pays (the
  // pool holds only what earlier rows of the same output size left there).
  fresh();
  for (let i = 0; i < RUNS; i++) sync.push(time(fresh));
  await turn();
  // Warm-up as a long-running loop's: enough default calls with turns for V8's GC (paced
  // by the outputs' bytes, about one per 64 MiB) to have handed outputs back a few times.
  for (let i = 0; i < WARM_CALLS; i++) {
    fresh();
    await turn();
  }
  reused();
  for (let i = 0; i < RUNS; i++) {
    d.push(time(fresh));
    await turn();
    r.push(time(reused));
    await turn();
  }
  const row = { call, outputMiB: bytes / 2 ** 20, defaultMs: median(d), defaultSyncMs: median(sync), reusedMs: median(r), ratio: median(d) / median(r) };
  rows.push(row);
  log(`  ${call}: default ${row.defaultMs.toFixed(2)} ms (tight loop ${row.defaultSyncMs.toFixed(2)} ms), reused output ${row.reusedMs.toFixed(2)} ms`);
};

// 1. The first write of a fresh 64 MiB buffer: a plain Float32Array against allocateOutput.
{
  const n = smokeOr(16, 1) * 2 ** 20;
  await record(
    'first write of a fresh Float32Array (default: new Float32Array; reused: one buffer refilled)',
    n * 4,
    () => new Float32Array(n).fill(1),
    (() => {
      const keep = new Float32Array(n);
      return () => keep.fill(1);
    })(),
  );
  await record(
    'first write of a fresh library output (allocateOutput: recycled memory) against the same refill',
    n * 4,
    () => new Float32Array(native().allocateOutput(n * 4)).fill(1),
    (() => {
      const keep = new Float32Array(n);
      return () => keep.fill(1);
    })(),
  );
}

// 2. Hashing: hashRows with and without `out` (the reference's 2 layers x 16 heads).
const tokenizer = CompressedTokenizer.deepseekV3();
{
  const mapping = new NgramHashMapping({}, tokenizer);
  const [B, T] = smokeOr<[number, number]>([8, 4096], [1, 256]);
  const ids = Int32Array.from({ length: B * T }, (_, i) => (i * 7919) % tokenizer.vocabSize);
  const out = new Int32Array(B * T * mapping.rowsPerToken * mapping.config.layerIds.length);
  await record(`hashRows ${B} x ${T}, int32 rows`, out.byteLength, () => mapping.hashRows(ids, [B, T], { output: 'int32' }), () => mapping.hashRows(ids, [B, T], { output: 'int32', out }));
}

// 3. The paper's layer at the reference's hidden size (hc 4 x 1024; a small table: the
// output, not the gather, is what differs).
{
  const config = smokeOr({ layerId: 1, engramVocabSize: [30011, 30011] }, { layerId: 1, layerIds: [1], hiddenSize: 64, hcMult: 2, nEmbedPerNgram: 64, nHeadPerNgram: 2, engramVocabSize: [3001, 3001] });
  const layer = new Engram(config, { tokenizer, tableDtype: 'bf16', seed: 1, device: 'cpu' });
  const g = layer.geometry;
  const [B, T] = smokeOr<[number, number]>([4, 1024], [1, 64]);
  const ids = Int32Array.from({ length: B * T }, (_, i) => (i * 104729) % tokenizer.vocabSize);
  const hidden = Float32Array.from({ length: B * T * g.hc * g.hidden }, (_, i) => Math.sin(i));
  const out = new Float32Array(hidden.length);
  await record(`Engram.forward ${B} x ${T} (hidden ${g.hc} x ${g.hidden})`, out.byteLength, () => layer.forward(hidden, ids, [B, T]), () => layer.forward(hidden, ids, [B, T], { out }));
}

// Where the outputs' memory came from over the whole run: fresh maps by kind of page,
// with what faulting them in cost, against recycled takes.
const pool = native().outputPoolStats();
const perMiB = (ns: number) => (ns < 0 ? 'not tried' : `${(ns / 1e3).toFixed(0)} us/MiB`);
const poolLine =
  `\nThe pool over this run: ${pool.recycled} outputs from recycled memory; ${pool.smallMaps + pool.hugeMaps} fresh maps (${(pool.freshBytes / 2 ** 20).toFixed(0)} MiB), ` +
  `${pool.smallMaps} of small pages (${(pool.smallSeconds * 1e3).toFixed(1)} ms to fault in, lately ${perMiB(pool.smallNsPerMiB)}) and ` +
  `${pool.hugeMaps} advised for huge pages (${(pool.hugeSeconds * 1e3).toFixed(1)} ms, lately ${perMiB(pool.hugeNsPerMiB)}). ` +
  `Fresh memory is faulted in by one MADV_POPULATE_WRITE call per output, with whichever kind of page has cost less per MiB lately (the other is tried every 32nd map).\n`;

const md =
  `# Fresh outputs: the default call against the same call into a reused output\n\n` +
  `Machine: ${facts.cpu}, ${facts.cores} cores, ${facts.memoryGiB} GiB, CPU kernel ${info.cpuKernel}; medians of ${RUNS} runs, after ${WARM_CALLS} default calls with turns. ` +
  `"default": the call without \`out\`, each run followed by a turn of the event loop as a server's loop has (outputs of 1 MiB or more come from \`allocateOutput\`: ` +
  `memory of outputs JS let go, recycled once their finalizers ran, zeroed, no page faults); "tight loop": the same call back to back with no turn, measured before the warm-up, where nothing is recycled ` +
  `(fresh memory, faulted in up front; V8's garbage collections, paced by the outputs' bytes, run in between); ` +
  `"reused output": the call with \`out\`, interleaved with the default runs.\n\n` +
  markdownTable(
    ['call', 'output MiB', 'default ms', 'default, tight loop ms', 'reused output ms', 'default / reused'],
    rows.map((r) => [r.call, r.outputMiB.toFixed(1), r.defaultMs.toFixed(2), r.defaultSyncMs.toFixed(2), r.reusedMs.toFixed(2), `${r.ratio.toFixed(2)}x`]),
  ) +
  poolLine;
console.log(md);
writeResults('outputs', { benchmark: 'outputs', date: new Date().toISOString(), machine: facts, cpuKernel: info.cpuKernel, runs: RUNS, rows, pool }, md);
