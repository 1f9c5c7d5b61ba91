// `engram v41 inspect <dir>` and `engram v41 synth <dir>`: DeepSeek-V4.1 checkpoints.
import fs from 'node:fs';
import path from 'node:path';

import { assembleV41Tensors, describeLayout, findEngramTensors, parseV41Config, readCheckpointJson, writeSyntheticV41Checkpoint, type SynthOptions } from '../layers/v41/checkpoint.js';
import { DeepseekV41EngramModel } from '../layers/v41/model.js';
import { tensorByteLength } from '../core/tensor.js';
import { progress } from '../core/throughput.js';

const gib = (bytes: number) => `${(bytes / 2 ** 30).toFixed(2)} GiB`;

export function inspectV41(dir: string, json: boolean): number {
  const config = parseV41Config(readCheckpointJson(path.join(dir, 'config.json')), path.join(dir, 'config.json'));
  const { tensors, files, layout } = findEngramTensors(dir);
  const shards = Object.fromEntries(Object.entries(tensors).map(([name, t]) => [name, t.rowParts?.length ?? 1]));
  assembleV41Tensors(tensors, config);
  const rows = Object.entries(tensors).map(([name, t]) => ({ name, dtype: t.dtype, shape: t.shape, bytes: tensorByteLength(t), shards: shards[name] }));
  const cols = (config.maxNgramSize - 1) * config.nHeads;
  const rowBytes = config.headDim + config.headDim / 32; // fp8 codes + UE8M0 scales
  let problem: string | undefined;
  let residentBytes = 0;
  try {
    const model = DeepseekV41EngramModel.fromCheckpoint(dir);
    residentBytes = process.memoryUsage().rss;
    void model;
  } catch (err) {
    problem = err instanceof Error ? err.message : String(err);
  }
  const report = {
    config,
    layout: { ...layout, description: describeLayout(layout) },
    files,
    tensors: rows,
    engramBytes: rows.reduce((n, r) => n + r.bytes, 0),
    gatheredBytesPerTokenPerLayer: cols * rowBytes,
    check: problem ?? 'ok: every tensor matches the config, the tokenizer compresses to engram_compressed_vocab_size',
    residentBytesAfterOpening: residentBytes,
  };
  if (json) {
    console.log(JSON.stringify(report, null, 1));
  } else {
    console.log(`layers ${config.layerIds.join(', ')}; hidden ${config.hiddenSize} x hc ${config.hcMult}; max n-gram ${config.maxNgramSize}, ${config.nHeads} heads, head dim ${config.headDim}`);
    console.log(`tables: ${config.numEmbeddings.map((r) => r.toLocaleString()).join(' and ')} rows; compressed vocab ${config.compressedVocabSize.toLocaleString()}, pad ${config.padId}, eps ${config.rmsNormEps}`);
    console.log(`gathered per token per layer: ${cols} rows x ${rowBytes} B = ${(cols * rowBytes).toLocaleString()} B`);
    console.log(`layout: ${describeLayout(layout)}`);
    console.log('');
    const width = Math.max(...rows.map((r) => r.name.length));
    for (const r of rows) console.log(`${r.name.padEnd(width)}  ${r.dtype.padEnd(8)} [${r.shape.join(', ')}]  ${gib(r.bytes)}${r.shards > 1 ? `  (split over ${r.shards} rank files)` : ''}`);
    console.log(`\nEngram tensors: ${gib(report.engramBytes)} in ${files.length} file(s)`);
    console.log(`check: ${report.check}`);
    if (!problem) console.log(`resident memory with the checkpoint open (tables memory-mapped): ${gib(residentBytes)}`);
  }
  return problem ? 1 : 0;
}

export function synthV41(dir: string, options: Omit<SynthOptions, 'onProgress'> = {}): number {
  const show = progress(options.mp === undefined ? 'writing layers' : 'writing rank files');
  const config = writeSyntheticV41Checkpoint(dir, { ...options, onProgress: show });
  console.log(`wrote ${dir}: tables of ${config.numEmbeddings.map((r) => r.toLocaleString()).join(' and ')} rows, hidden ${config.hiddenSize}`);
  return 0;
}
