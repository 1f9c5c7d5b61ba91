// `engram v41 inspect <dir>` and `engram v41 synth <dir>`: DeepSeek-V4.1 checkpoints.
import fs from 'node:fs';
import path from 'node:path';

import { assembleV41Tensors, describeLayout, findEngramTensors, parseV41Config, readCheckpointJson, writeSyntheticV41Checkpoint, type SynthOptions } from '../layers/v41/checkpoint.js';
import { DeepseekV41EngramModel } from '../layers/v41/model.js';
import { tensorByteLength } from '../core/tensor.js';
import { progress } from '../core/throughput.js';

const gib = (bytes: number) => `${(bytes / 2 ** 30).toFixed(2)} GiB`;

/** Where a table holds a non-finite value (an e4m3 NaN code or an e8m0 NaN scale), if anywhere. */
export interface TableScan {
  layerId: number;
  rows: number;
  firstBad: { row: number; col: number; value: number } | null;
}

/**
 * Reads every row of each layer's table (decoded, as the layers read them) and reports the
 * first non-finite value: tables are too large to scan at load, so this is the explicit
 * check (`engram v41 inspect --verify`), with progress on a TTY.
 */
export function verifyV41Tables(model: DeepseekV41EngramModel, chunkRows = 1 << 16): TableScan[] {
  const scans: TableScan[] = [];
  for (const [layerId, layer] of model.layers) {
    const table = layer.table;
    const show = progress(`verifying layer ${layerId}'s table`);
    const scan: TableScan = { layerId, rows: table.rows, firstBad: null };
    for (let start = 0; start < table.rows && scan.firstBad === null; start += chunkRows) {
      const n = Math.min(chunkRows, table.rows - start);
      const ids = table.rows <= 2 ** 31 - 1 ? Int32Array.from({ length: n }, (_, i) => start + i) : BigInt64Array.from({ length: n }, (_, i) => BigInt(start + i));
      const values = table.gather(ids);
      for (let i = 0; i < values.length; i++) {
        if (!Number.isFinite(values[i])) {
          scan.firstBad = { row: start + Math.floor(i / table.cols), col: i % table.cols, value: values[i] };
          break;
        }
      }
      show(start + n, table.rows);
    }
    scans.push(scan);
  }
  return scans;
}

export function inspectV41(dir: string, json: boolean, verify = false): number {
  const config = parseV41Config(readCheckpointJson(path.join(dir, 'config.json')), path.join(dir, 'config.json'));
  const { tensors, files, layout } = findEngramTensors(dir);
  const shards = Object.fromEntries(Object.entries(tensors).map(([name, t]) => [name, t.rowParts?.length ?? 1]));
  assembleV41Tensors(tensors, config);
  const rows = Object.entries(tensors).map(([name, t]) => ({ name, dtype: t.dtype, shape: t.shape, bytes: tensorByteLength(t), shards: shards[name] }));
  const cols = (config.maxNgramSize - 1) * config.nHeads;
  const rowBytes = config.headDim + config.headDim / 32; // fp8 codes + UE8M0 scales
  let problem: string | undefined;
  let residentBytes = 0;
  let scans: TableScan[] | undefined;
  try {
    const model = DeepseekV41EngramModel.fromCheckpoint(dir);
    residentBytes = process.memoryUsage().rss;
    if (verify) {
      scans = verifyV41Tables(model);
      const bad = scans.find((t) => t.firstBad !== null);
      if (bad !== undefined) problem = `layer ${bad.layerId}'s table holds ${bad.firstBad!.value} at row ${bad.firstBad!.row}, column ${bad.firstBad!.col} (an e4m3 NaN code or an e8m0 NaN scale)`;
    }
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
    ...(scans !== undefined ? { verified: scans } : {}),
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
    for (const t of scans ?? []) console.log(`layer ${t.layerId}'s table: ${t.rows.toLocaleString()} rows ${t.firstBad === null ? 'all finite' : `hold a non-finite value at row ${t.firstBad.row}`}`);
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
