// DeepSeek-V4.1 checkpoints: the Engram fields of config.json, where the Engram tensors
// live (model.safetensors.index.json, DeepSeek's model{rank}-mp{mp}.safetensors
// shards, or a single model.safetensors), and a writer of synthetic checkpoints in the
// released layout for tests and benchmarks.
import fs from 'node:fs';
import path from 'node:path';

import { CompressedTokenizer } from '../../hashing/compressed-tokenizer.js';
import { DTYPE_BYTES, regionBytes, type ByteRegion, type Tensor, type TensorPart } from '../../core/tensor.js';
import { NgramHashMapping } from '../../hashing/ngram-hash-mapping.js';
import { native } from '../../native/index.js';
import { EngramTable, nativeBuffer } from '../../table/table.js';
import { readSafetensors, writeSafetensors, type TensorHole } from '../../core/safetensors.js';
import { describe, requireInteger, requireIntegerList, requireRegularFile } from '../../core/validate.js';

export interface V41CheckpointConfig {
  layerIds: number[];
  /** table rows per layer, in layerIds order */
  numEmbeddings: number[];
  maxNgramSize: number;
  engramVocabSize: number[];
  nHeads: number;
  headDim: number;
  padId: number;
  compressedVocabSize: number;
  hiddenSize: number;
  hcMult: number;
  rmsNormEps: number;
}

function field(config: Record<string, unknown>, name: string, file: string): unknown {
  const v = config[name];
  if (v === undefined) throw new TypeError(`${file} has no '${name}' (top level or under text_config): not a DeepSeek-V4.1 Engram config`);
  return v;
}

// Upper bounds far above any real model, so that a corrupt value is refused by name
// instead of sizing an allocation (2^40 rows, 2^16 wide).
const intOf = (v: unknown, name: string, file: string, min = 0, max = 2 ** 40): number => {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) throw new TypeError(`${file}: '${name}' must be a non-negative integer, got ${describe(v)}`);
  if (v < min || v > max) throw new RangeError(`${file}: '${name}' must be in [${min}, ${max}], got ${v}`);
  return v;
};

/** The Engram fields of a config.json object (top level or under text_config). */
export function parseV41Config(json: unknown, file = 'config.json'): V41CheckpointConfig {
  if (json === null || typeof json !== 'object') throw new TypeError(`${file} is not a JSON object`);
  const top = json as Record<string, unknown>;
  const c = (top.engram_layer_ids === undefined && top.text_config && typeof top.text_config === 'object' ? top.text_config : top) as Record<string, unknown>;
  const list = (name: string, n: number) => {
    const v = field(c, name, file);
    const arr = Array.isArray(v) ? v : new Array(n).fill(v);
    if (arr.length !== n) throw new RangeError(`${file}: '${name}' has ${arr.length} entries, expected ${n}`);
    return arr.map((x, i) => intOf(x, `${name}[${i}]`, file));
  };
  const layerIdsRaw = field(c, 'engram_layer_ids', file);
  if (!Array.isArray(layerIdsRaw) || layerIdsRaw.length === 0) throw new TypeError(`${file}: 'engram_layer_ids' must be a non-empty list`);
  const layerIds = layerIdsRaw.map((x, i) => intOf(x, `engram_layer_ids[${i}]`, file, 0, 1023));
  // n-grams run from 2 to the maximum.
  const maxNgramSize = intOf(field(c, 'engram_max_ngram_size', file), 'engram_max_ngram_size', file, 2, 16);
  const eps = field(c, 'rms_norm_eps', file);
  if (typeof eps !== 'number' || !(eps >= 0)) throw new TypeError(`${file}: 'rms_norm_eps' must be a number >= 0, got ${describe(eps)}`);
  return {
    layerIds,
    numEmbeddings: list('engram_num_embeddings', layerIds.length),
    maxNgramSize,
    engramVocabSize: list('engram_vocab_size', maxNgramSize - 1),
    nHeads: intOf(field(c, 'engram_n_heads', file), 'engram_n_heads', file, 1, 4096),
    headDim: intOf(field(c, 'engram_head_dim', file), 'engram_head_dim', file, 1, 65536),
    padId: intOf(field(c, 'engram_pad_token_id', file), 'engram_pad_token_id', file),
    compressedVocabSize: intOf(field(c, 'engram_compressed_vocab_size', file), 'engram_compressed_vocab_size', file),
    hiddenSize: intOf(field(c, 'hidden_size', file), 'hidden_size', file, 1, 65536),
    hcMult: intOf(field(c, 'hc_mult', file), 'hc_mult', file, 1, 64),
    rmsNormEps: eps,
  };
}

export const engramPrefix = (layerId: number) => `layers.${layerId}.engram.`;

/** A checkpoint's JSON file (config.json, the index), refused by name when not a regular file or not JSON. */
export function readCheckpointJson(file: string): unknown {
  requireRegularFile('checkpoint file', file);
  const text = fs.readFileSync(file, 'utf8');
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new TypeError(`'${file}' is not valid JSON: ${(err as Error).message}`);
  }
}

/**
 * A shard path named by an index, resolved inside the checkpoint directory: a weight_map
 * entry that leads outside it (`../`, an absolute path, a symlink out) is refused, so that
 * loading a downloaded checkpoint never reads other files.
 */
function shardInside(dir: string, entry: string, index: string): string {
  if (typeof entry !== 'string' || entry === '') throw new TypeError(`${index}: a weight_map entry must be a file name, got ${describe(entry)}`);
  const root = fs.realpathSync(dir);
  const file = path.resolve(root, entry);
  const inside = (p: string) => p.startsWith(root + path.sep);
  if (!inside(file)) throw new RangeError(`${index}: weight_map entry '${entry}' points outside the checkpoint directory '${dir}'`);
  if (fs.existsSync(file) && !inside(fs.realpathSync(file))) throw new RangeError(`${index}: weight_map entry '${entry}' is a link out of the checkpoint directory '${dir}'`);
  return file;
}

/**
 * A checkpoint's Engram tensor name as this library keys it: `layers.{L}.engram.*`, with
 * or without the Hugging Face release's leading `model.`, and `scale` for a block scale
 * that the release calls `weight_scale_inv` (DeepSeek's convert.py renames it so).
 * Undefined for any other tensor.
 */
export function engramTensorKey(name: string): string | undefined {
  const m = /^(?:model\.)?(layers\.\d+\.engram\..+)$/.exec(name);
  if (m === null) return undefined;
  return m[1].replace(/\.weight_scale_inv$/, '.scale');
}

/** Which of DeepSeek's layouts a checkpoint directory is in (see findEngramTensors). */
export type V41CheckpointLayout = { kind: 'index'; shards: number } | { kind: 'model-parallel'; mp: number } | { kind: 'single' };

export function describeLayout(layout: V41CheckpointLayout): string {
  if (layout.kind === 'index') return `model.safetensors.index.json over ${layout.shards} shard file(s)`;
  if (layout.kind === 'model-parallel') return `DeepSeek's model-parallel shards model{0..${layout.mp - 1}}-mp${layout.mp}.safetensors`;
  return 'one model.safetensors';
}

/**
 * Every Engram tensor of a checkpoint directory, memory-mapped, keyed `layers.{L}.engram.*`
 * (see engramTensorKey), from the layouts DeepSeek ships:
 *  - the Hugging Face release: model.safetensors.index.json over its shards;
 *  - DeepSeek's convert.py output: model{i}-mp{mp}.safetensors, one file per model-parallel
 *    rank; tensors split by rows across the ranks keep their parts where they are mapped
 *    (the last rank's pad rows are dropped when the layer's shapes are known:
 *    assembleV41Tensors);
 *  - a single model.safetensors.
 */
export function findEngramTensors(dir: string): { tensors: Record<string, Tensor>; files: string[]; fileOf: Record<string, string>; layout: V41CheckpointLayout } {
  const tensors: Record<string, Tensor> = {};
  const files: string[] = [];
  const fileOf: Record<string, string> = {};
  // Parts of each tensor in shard (rank) order: several where model-parallel shards split it.
  const parts = new Map<string, Array<{ tensor: Tensor; file: string }>>();
  const take = (file: string, names?: Set<string>) => {
    if (!fs.existsSync(file)) throw new Error(`checkpoint shard '${file}' is missing`);
    const st = readSafetensors(file);
    files.push(file);
    for (const [stored, t] of Object.entries(st.tensors)) {
      const name = engramTensorKey(stored);
      if (name === undefined || (names && !names.has(stored))) continue;
      if (!parts.has(name)) parts.set(name, []);
      const list = parts.get(name)!;
      if (list.some((p) => p.file === file)) throw new RangeError(`'${file}' holds tensor '${name}' twice (with and without 'model.', or as both scale and weight_scale_inv)`);
      list.push({ tensor: t, file });
    }
  };
  let layout: V41CheckpointLayout;
  const index = path.join(dir, 'model.safetensors.index.json');
  if (fs.existsSync(index)) {
    const json = readCheckpointJson(index) as { weight_map?: Record<string, string> };
    if (json === null || typeof json !== 'object' || !json.weight_map || typeof json.weight_map !== 'object') throw new TypeError(`${index} has no weight_map`);
    const byFile = new Map<string, Set<string>>();
    for (const [name, file] of Object.entries(json.weight_map)) {
      if (engramTensorKey(name) === undefined) continue;
      if (!byFile.has(file)) byFile.set(file, new Set());
      byFile.get(file)!.add(name);
    }
    for (const [file, names] of byFile) take(shardInside(dir, file, index), names);
    layout = { kind: 'index', shards: byFile.size };
  } else {
    const ranks = fs.readdirSync(dir).map((f) => /^model(\d+)-mp(\d+)\.safetensors$/.exec(f)).filter((m): m is RegExpExecArray => m !== null);
    if (ranks.length > 0) {
      const mp = Number(ranks[0][2]);
      const other = ranks.find((m) => Number(m[2]) !== mp);
      if (other) throw new RangeError(`'${dir}' mixes model-parallel degrees: '${ranks[0][0]}' and '${other[0]}'`);
      for (let rank = 0; rank < mp; rank++) {
        const file = path.join(dir, `model${rank}-mp${mp}.safetensors`);
        if (!fs.existsSync(file)) throw new Error(`checkpoint rank file '${file}' is missing (${mp} ranks: model0-mp${mp} to model${mp - 1}-mp${mp})`);
        take(file);
      }
      layout = { kind: 'model-parallel', mp };
    } else if (fs.existsSync(path.join(dir, 'model.safetensors'))) {
      take(path.join(dir, 'model.safetensors'));
      layout = { kind: 'single' };
    } else {
      throw new Error(`'${dir}' has no model.safetensors.index.json, model{rank}-mp{mp}.safetensors rank files or model.safetensors`);
    }
  }
  for (const [name, list] of parts) {
    if (list.length === 1) {
      tensors[name] = list[0].tensor;
      fileOf[name] = list[0].file;
    } else {
      tensors[name] = splitTensor(name, list);
    }
  }
  return { tensors, files, fileOf, layout };
}

/**
 * A tensor that model-parallel shards split along its first dimension (a table split by
 * rows across model{rank}-mp{mp} files): its parts stay where they are mapped
 * (rowParts, which tables read in place); `data` joins them in memory on first use (for
 * the small weights).
 */
function splitTensor(name: string, list: Array<{ tensor: Tensor; file: string }>): Tensor {
  const first = list[0].tensor;
  for (const { tensor, file } of list) {
    const rest = tensor.shape.slice(1);
    if (tensor.dtype !== first.dtype || tensor.shape.length !== first.shape.length || tensor.shape.length === 0 || rest.some((d, i) => d !== first.shape[i + 1])) {
      throw new RangeError(
        `tensor '${name}' is in ${list.length} shards with parts that do not join along their first dimension ` +
          `(${first.dtype} [${first.shape.join(', ')}] vs ${tensor.dtype} [${tensor.shape.join(', ')}] in '${file}')`,
      );
    }
  }
  // DeepSeek's layout gives every rank the same ceil(rows / mp) rows (the last padded).
  const odd = list.find((p) => p.tensor.shape[0] !== first.shape[0]);
  if (odd !== undefined) {
    throw new RangeError(
      `tensor '${name}' is split by rows over ${list.length} rank files of different sizes: '${odd.file}' holds ${odd.tensor.shape[0]} rows ` +
        `where '${list[0].file}' holds ${first.shape[0]} (DeepSeek's layout gives every rank ceil(rows / mp), the last padded)`,
    );
  }
  const rows = list.reduce((sum, p) => sum + p.tensor.shape[0], 0);
  const rowParts: TensorPart[] = list.map(({ tensor, file }) => ({ path: file, shape: tensor.shape, data: tensor.data, fileOffset: tensor.fileOffset }));
  let joined: ByteRegion | undefined;
  const t = { dtype: first.dtype, shape: [rows, ...first.shape.slice(1)], rowParts } as Tensor;
  Object.defineProperty(t, 'data', { enumerable: true, get: () => (joined ??= joinRowParts(name, rowParts)) });
  return t;
}

/** The parts of a split tensor joined in rank order into process memory. */
function joinRowParts(name: string, parts: TensorPart[]): ByteRegion {
  const byteLength = parts.reduce((sum, p) => sum + p.data.byteLength, 0);
  let buffer: ArrayBuffer;
  try {
    buffer = new ArrayBuffer(byteLength);
  } catch {
    throw new RangeError(`tensor '${name}' joined from ${parts.length} shards takes ${byteLength} bytes: more than this runtime can allocate in one buffer`);
  }
  let at = 0;
  for (const { data: r } of parts) {
    native().copyRegion({ src: nativeBuffer(r.buffer), srcByteOffset: r.byteOffset, dst: buffer, dstByteOffset: at, byteLength: r.byteLength, threads: 0 });
    at += r.byteLength;
  }
  return { buffer, byteOffset: 0, byteLength };
}

/**
 * The tensors of one layer as the config expects them (name relative to the layer's
 * prefix -> shape), for assembling model-parallel shards: a tensor found in several
 * shards is split by rows (the parts join along dim 0 to the expected shape), replicated
 * (every part already has it: rank 0's is used), or split by columns (the parts join
 * along dim 1: joined in memory; tables are never split so).
 */
export function v41LayerShapes(config: V41CheckpointConfig, layerIndex: number): Record<string, number[]> {
  const rows = config.numEmbeddings[layerIndex];
  const out = (config.hcMult + 1) * config.hiddenSize;
  const features = (config.maxNgramSize - 1) * config.nHeads * config.headDim;
  return {
    'embed.weight': [rows, config.headDim],
    'embed.scale': [rows, config.headDim / 32],
    'wkv.weight': [out, features],
    'wkv.scale': [Math.ceil(out / 32), Math.ceil(features / 32)],
    q_weight: [config.hcMult, config.hiddenSize],
    k_weight: [config.hcMult, config.hiddenSize],
  };
}

/** A tensor found in several shards, as `expected` asks (see v41LayerShapes); others unchanged. */
export function assembleShardedTensor(name: string, t: Tensor, expected: number[] | undefined): Tensor {
  const parts = t.rowParts;
  if (parts === undefined || expected === undefined || expected.length !== t.shape.length) return t;
  const same = (a: number[], b: number[]) => a.length === b.length && a.every((d, i) => d === b[i]);
  if (same(t.shape, expected)) return t; // split by rows
  const pad = t.shape[0] - expected[0];
  if (pad > 0 && pad < parts.length * Math.ceil(expected[0] / parts.length) && parts.length * Math.ceil(expected[0] / parts.length) === t.shape[0] && same(t.shape.slice(1), expected.slice(1))) {
    // Split by rows with the last rank padded to ceil(rows / mp): the pad rows are dropped,
    // never gathered (each part keeps its mapping; the last ones end early).
    return withoutPadRows(t, expected);
  }
  if (parts.every((p) => same(p.shape, expected))) {
    // Replicated in every shard (DeepSeek's converter copies unsplit weights to each rank).
    return { dtype: t.dtype, shape: expected.slice(), data: parts[0].data, fileOffset: parts[0].fileOffset, rowParts: undefined };
  }
  if (expected.length === 2 && parts.every((p) => p.shape[0] === expected[0]) && parts.reduce((n, p) => n + p.shape[1], 0) === expected[1]) {
    if (/embed\.(weight|scale)$/.test(name)) throw new RangeError(`table tensor '${name}' is split by columns across ${parts.length} shards: only splits by rows are read`);
    return { dtype: t.dtype, shape: expected.slice(), data: joinColumns(name, parts, DTYPE_BYTES[t.dtype]) };
  }
  return t; // the layer's shape check names it
}

/** A tensor split by rows, its parts cut to the expected rows (pad rows at the end dropped). */
function withoutPadRows(t: Tensor, expected: number[]): Tensor {
  let left = expected[0];
  const rowParts: TensorPart[] = [];
  for (const p of t.rowParts!) {
    const rows = Math.min(left, p.shape[0]);
    left -= rows;
    if (rows === 0) continue;
    const rowBytes = p.data.byteLength / p.shape[0];
    rowParts.push({ ...p, shape: [rows, ...p.shape.slice(1)], data: { buffer: p.data.buffer, byteOffset: p.data.byteOffset, byteLength: rows * rowBytes } });
  }
  let joined: ByteRegion | undefined;
  const out = { dtype: t.dtype, shape: expected.slice(), rowParts } as Tensor;
  Object.defineProperty(out, 'data', { enumerable: true, get: () => (joined ??= joinRowParts('(trimmed)', rowParts)) });
  return out;
}

/** Every layer's tensors found in several shards assembled as the config expects (in place). */
export function assembleV41Tensors(tensors: Record<string, Tensor>, config: V41CheckpointConfig): void {
  config.layerIds.forEach((id, i) => {
    const prefix = engramPrefix(id);
    const shapes = v41LayerShapes(config, i);
    for (const name of Object.keys(tensors)) {
      if (name.startsWith(prefix)) tensors[name] = assembleShardedTensor(name, tensors[name], shapes[name.slice(prefix.length)]);
    }
  });
}

/** Parts [rows, k_i] side by side: [rows, sum k_i], in process memory. */
function joinColumns(name: string, parts: TensorPart[], elementBytes: number): ByteRegion {
  const rows = parts[0].shape[0];
  const widths = parts.map((p) => p.shape[1] * elementBytes);
  const rowBytes = widths.reduce((a, b) => a + b, 0);
  const out = new Uint8Array(rows * rowBytes);
  parts.forEach((p, i) => {
    const bytes = regionBytes(p.data, `tensor '${name}' (part ${i})`);
    const at = widths.slice(0, i).reduce((a, b) => a + b, 0);
    for (let r = 0; r < rows; r++) out.set(bytes.subarray(r * widths[i], (r + 1) * widths[i]), r * rowBytes + at);
  });
  return out;
}

export interface SynthOptions {
  /** Table rows relative to the release (engram_vocab_size scaled by this). */
  rowsScale?: number;
  hiddenSize?: number;
  hcMult?: number;
  layerIds?: number[];
  seed?: number;
  /** tokenizer.json to copy in (default: DeepSeek-V3's; the config gets its compressed size) */
  tokenizer?: string;
  /**
   * Write the tables (embed.weight, embed.scale) as holes: zeros that take no disk space
   * on file systems with sparse files. With rowsScale 1 this gives the released geometry
   * (two 98 GB tables) for checking that a checkpoint opens without reading them.
   */
  sparseTables?: boolean;
  /**
   * Write DeepSeek's convert.py layout instead of an index: model{rank}-mp{mp}.safetensors,
   * each table split by rows into ceil(rows / mp) rows per rank (the last rank padded:
   * weight rows 0, scale rows code 1), every other Engram tensor copied whole into every rank.
   */
  mp?: number;
  onProgress?: (done: number, total: number) => void;
}

/**
 * Writes a checkpoint in V4.1's layout (config.json, tokenizer.json, index + one shard per
 * layer with fp8 tables, UE8M0 scales, fp8 wkv with 32x32 block scales, BF16 q/k weights).
 * Values are seeded random, finite, and of realistic magnitude.
 */
export function writeSyntheticV41Checkpoint(dir: string, options: SynthOptions = {}): V41CheckpointConfig {
  const rowsScale = options.rowsScale ?? 1e-4;
  if (!(rowsScale > 0 && rowsScale <= 1)) throw new RangeError(`options.rowsScale must be in (0, 1], got ${describe(rowsScale)}`);
  // Everything is checked before the directory is touched: no half-written checkpoint.
  const layerIds = requireIntegerList('options.layerIds', options.layerIds ?? [1, 14], 0, 1023);
  if (layerIds.length === 0) throw new RangeError('options.layerIds must name at least one layer');
  const hiddenSize = requireInteger('options.hiddenSize', options.hiddenSize ?? 5120, 1, 65536);
  const hcMult = requireInteger('options.hcMult', options.hcMult ?? 4, 1, 64);
  if (options.mp !== undefined) requireInteger('options.mp', options.mp, 1, 64);
  if (options.tokenizer !== undefined) requireRegularFile('options.tokenizer', options.tokenizer);
  const maxNgramSize = 4;
  const nHeads = 8;
  const headDim = 256;
  fs.mkdirSync(dir, { recursive: true });
  const tokenizerPath = options.tokenizer ?? CompressedTokenizer.deepseekV3Path();
  fs.copyFileSync(tokenizerPath, path.join(dir, 'tokenizer.json'));
  const tokenizer = CompressedTokenizer.fromFile(path.join(dir, 'tokenizer.json'));
  const vocab = Math.max(2, Math.round(16_000_000 * rowsScale));
  const mapping = new NgramHashMapping({ engramVocabSize: vocab, maxNgramSize, nHeadPerNgram: nHeads, layerIds, padId: 2, seed: 0 }, tokenizer);
  const config: V41CheckpointConfig = {
    layerIds,
    numEmbeddings: layerIds.map((id) => mapping.tableRows(id)),
    maxNgramSize,
    engramVocabSize: new Array(maxNgramSize - 1).fill(vocab),
    nHeads,
    headDim,
    padId: 2,
    compressedVocabSize: tokenizer.compressedVocabSize,
    hiddenSize,
    hcMult,
    rmsNormEps: 1e-20,
  };
  // The released config's shape: the text model's fields under text_config, fp8 with 32x32
  // UE8M0 block scales in quantization_config.
  fs.writeFileSync(
    path.join(dir, 'config.json'),
    JSON.stringify(
      {
        architectures: ['DeepseekV41ForCausalLM'],
        model_type: 'deepseek_v41',
        text_config: {
          hidden_size: hiddenSize,
          hc_mult: hcMult,
          rms_norm_eps: config.rmsNormEps,
          engram_layer_ids: layerIds,
          engram_num_embeddings: config.numEmbeddings,
          engram_max_ngram_size: maxNgramSize,
          engram_vocab_size: vocab,
          engram_n_heads: nHeads,
          engram_head_dim: headDim,
          engram_pad_token_id: 2,
          engram_compressed_vocab_size: config.compressedVocabSize,
        },
        quantization_config: { quant_method: 'fp8', fmt: 'e4m3', scale_fmt: 'ue8m0', weight_block_size: [32, 32] },
      },
      null,
      2,
    ),
  );
  let state = (options.seed ?? 1) >>> 0 || 1;
  const next = () => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return state >>> 0;
  };
  // Plain loops: TypedArray.from with a mapping function took 7 s for one wkv's 157 M codes.
  const fill = <T extends Uint8Array | Uint16Array>(out: T, value: () => number): T => {
    for (let i = 0; i < out.length; i++) out[i] = value();
    return out;
  };
  // fp8 codes of magnitude 2^-3..2^3 (exponent field 4..10), either sign: never NaN.
  const fp8 = (n: number) =>
    fill(new Uint8Array(n), () => {
      const r = next();
      return (r & 0x80) | ((4 + (r % 7)) << 3) | ((r >>> 8) & 7);
    });
  const scales = (n: number, center: number) => fill(new Uint8Array(n), () => center - 2 + (next() % 5));
  const bf16Near1 = (n: number) => fill(new Uint16Array(n), () => 0x3f40 + (next() % 0x80)); // 0.75 .. 1.25
  const features = (maxNgramSize - 1) * nHeads * headDim;
  const sparse = options.sparseTables === true;
  // Everything but the tables, per layer.
  const weightsOf = (id: number): Record<string, Tensor> => {
    const p = engramPrefix(id);
    return {
      [`${p}wkv.weight`]: { dtype: 'F8_E4M3', shape: [(hcMult + 1) * hiddenSize, features], data: fp8((hcMult + 1) * hiddenSize * features) },
      [`${p}wkv.scale`]: {
        dtype: 'F8_E8M0',
        shape: [Math.ceil(((hcMult + 1) * hiddenSize) / 32), Math.ceil(features / 32)],
        data: scales(Math.ceil(((hcMult + 1) * hiddenSize) / 32) * Math.ceil(features / 32), 117),
      },
      [`${p}q_weight`]: { dtype: 'BF16', shape: [hcMult, hiddenSize], data: bf16Near1(hcMult * hiddenSize) },
      [`${p}k_weight`]: { dtype: 'BF16', shape: [hcMult, hiddenSize], data: bf16Near1(hcMult * hiddenSize) },
    };
  };
  // Tables are written as holes, then filled in chunks (sparseTables: left as holes).
  const tableHoles = (id: number, rows: number): Record<string, TensorHole> => ({
    [`${engramPrefix(id)}embed.weight`]: { dtype: 'F8_E4M3', shape: [rows, headDim], hole: true },
    [`${engramPrefix(id)}embed.scale`]: { dtype: 'F8_E8M0', shape: [rows, headDim / 32], hole: true },
  });
  const seedOf = (id: number, rank?: number) => (rank === undefined ? (options.seed ?? 1) * 1000 + id : ((options.seed ?? 1) * 1000 + id) * 64 + rank);
  if (options.mp !== undefined) {
    // DeepSeek's convert.py layout: model{rank}-mp{mp}.safetensors. Each table is split by
    // rows, ceil(rows / mp) per rank, the last rank padded (weight rows 0, scale rows code
    // 1); every other Engram tensor is copied whole into every rank.
    const mp = options.mp;
    if (!Number.isInteger(mp) || mp < 1 || mp > 64) throw new RangeError(`options.mp must be an integer in [1, 64], got ${describe(mp)}`);
    const weights = layerIds.map((id) => weightsOf(id)); // the same tensors in every rank
    for (let rank = 0; rank < mp; rank++) {
      const file = path.join(dir, `model${rank}-mp${mp}.safetensors`);
      const tensors: Record<string, Tensor | TensorHole> = {};
      const ranges = layerIds.map((id, i) => {
        const per = Math.ceil(config.numEmbeddings[i] / mp);
        const begin = Math.min(config.numEmbeddings[i], rank * per);
        return { id, per, real: Math.min(config.numEmbeddings[i], begin + per) - begin };
      });
      for (const { id, per } of ranges) Object.assign(tensors, tableHoles(id, per));
      for (const w of weights) Object.assign(tensors, w);
      writeSafetensors(file, tensors, { format: 'pt' });
      for (const { id, per, real } of ranges) {
        if (!sparse && real > 0) fillSyntheticTable(file, `${engramPrefix(id)}embed.`, real, headDim, seedOf(id, rank), () => {});
        if (real < per) writePadScales(file, `${engramPrefix(id)}embed.scale`, real, per, headDim / 32);
      }
      options.onProgress?.(rank + 1, mp);
    }
    return config;
  }
  const weightMap: Record<string, string> = {};
  layerIds.forEach((id, i) => {
    const rows = config.numEmbeddings[i];
    const file = `model-engram-layer${id}.safetensors`;
    const tensors: Record<string, Tensor | TensorHole> = { ...tableHoles(id, rows), ...weightsOf(id) };
    writeSafetensors(path.join(dir, file), tensors, { format: 'pt' });
    if (!sparse) fillSyntheticTable(path.join(dir, file), `${engramPrefix(id)}embed.`, rows, headDim, seedOf(id), (done) => options.onProgress?.(i + done, layerIds.length));
    for (const name of Object.keys(tensors)) weightMap[name] = file;
    options.onProgress?.(i + 1, layerIds.length);
  });
  fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }, null, 2));
  return config;
}

/** The scale rows [from, to) of a padded rank set to code 1, as DeepSeek's convert.py pads them. */
function writePadScales(file: string, name: string, from: number, to: number, width: number): void {
  const at = readSafetensors(file).tensors[name].fileOffset!;
  const fd = fs.openSync(file, 'r+');
  try {
    fs.writeSync(fd, new Uint8Array((to - from) * width).fill(1), 0, (to - from) * width, at + from * width);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Fills a table written as a hole with seeded N(0, 1) rows quantised to fp8 + UE8M0
 * (the native generator), chunk by chunk: a table of any size, a bounded buffer.
 */
function fillSyntheticTable(file: string, prefix: string, rows: number, cols: number, seed: number, onProgress: (share: number) => void): void {
  const st = readSafetensors(file);
  const dataAt = st.tensors[prefix + 'weight'].fileOffset!;
  const scalesAt = st.tensors[prefix + 'scale'].fileOffset!;
  const chunkRows = Math.min(rows, Math.max(1, Math.floor((64 * 2 ** 20) / cols)));
  // One chunk's memory, refilled: EngramTable.random(n, ...) per chunk paid its page faults
  // every time. A row's values depend only on the seed and the row, so filling the whole
  // chunk and writing its first n rows gives the last chunk the values random(n) would.
  const t = EngramTable.allocate(chunkRows, cols, 'f8e4m3');
  const fd = fs.openSync(file, 'r+');
  try {
    for (let at = 0, chunk = 0; at < rows; at += chunkRows, chunk++) {
      const n = Math.min(chunkRows, rows - at);
      native().fillRandom({ ...t.nativeArgs(), seed: seed * 65536 + chunk, distribution: 'normal', scale: 1, threads: 0 });
      fs.writeSync(fd, t.data, 0, n * cols, dataAt + at * cols);
      fs.writeSync(fd, t.scales!, 0, n * (cols / 32), scalesAt + at * (cols / 32));
      onProgress((at + n) / rows);
    }
  } finally {
    fs.closeSync(fd);
  }
}
