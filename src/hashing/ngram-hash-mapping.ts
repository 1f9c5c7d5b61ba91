// The reference's NgramHashMapping: per layer multipliers and primes, and the hashing
// calls that run on the native CPU or CUDA backend.
import { CompressedTokenizer } from './compressed-tokenizer.js';
import { resolveDevice } from '../core/devices.js';
import { native, type NativeHashArgs } from '../native/index.js';
import { defaultRng } from './numpy-random.js';
import { resolveConfig, type NgramHashConfig, type ResolvedNgramHashConfig } from './ngram-hash-config.js';
import { findNextPrime, isPrime } from './primes.js';
import { describe, requireDevice, requireIds, requireInteger, requireShape, type Device, type IdArray, requireTokenMask, refuseOverlap } from '../core/validate.js';
import { newBigInt64, newInt32 } from '../core/output.js';

const INT64_MAX = (1n << 63n) - 1n;
const SEED_LAYER_STRIDE = 10007;
const INT32_ROWS = 2 ** 31;

export interface LayerHashSpec {
  layerId: number;
  /** int64 multipliers, one per token of the longest n-gram (decimal strings in JSON). */
  multipliers: bigint[];
  /** primes[ngram - 2][head] */
  primes: number[][];
}

/** Everything the hash depends on, exportable to and importable from JSON. */
export interface HashSpecJson {
  format: 'engram-kernels/hash-spec';
  version: 1;
  config: ResolvedNgramHashConfig;
  compressedVocabSize: number;
  compressedPadId: number;
  layers: Array<{ layerId: number; multipliers: string[]; primes: number[][] }>;
  /** Optional compressed-tokenizer lookup (raw id -> compressed id). */
  lookup?: number[];
}

export interface HashOptions {
  /** 'auto' (default) uses CUDA when a device is visible. */
  device?: Device;
  deviceIndex?: number;
  /** CPU threads (default: all). */
  threads?: number;
  /**
   * Output buffer to fill instead of allocating one (of exactly the result's length and
   * type): reusing it across calls avoids a large allocation and GC work per call.
   */
  out?: Int32Array | BigInt64Array;
}

export interface HashRowsOptions extends HashOptions {
  /** [B, T], 0 (or false) = DEAD (image span, padding): blocks the look-back. */
  tokenMask?: Uint8Array | ArrayLike<number | boolean>;
  /** [B, maxNgramSize-1] compressed ids before this chunk, -1 = none/DEAD (default: all -1). */
  history?: Int32Array | ArrayLike<number>;
  /** Row-id type; 'auto' (default) is int64 only when a layer's table exceeds 2^31 rows. */
  output?: 'auto' | 'int32' | 'int64';
  /** Hash only these layers (a subset of config.layerIds, in this order); default: all. */
  layers?: number[];
}

export interface HashRowsResult {
  /** [B, T, layers, (maxNgramSize-1) * nHeadPerNgram] global row ids (layers: options.layers or config.layerIds). */
  rowIds: Int32Array | BigInt64Array;
  /** [B, maxNgramSize-1] history to pass to the next chunk of the same sequences. */
  history: Int32Array;
}

interface LayerState {
  multipliers: BigInt64Array;
  primes: number[][];
  offsets: number[];
  tableRows: number;
}

function drawMultipliers(config: ResolvedNgramHashConfig, layerId: number, compressedVocabSize: number): bigint[] {
  const halfBound = (INT64_MAX / BigInt(compressedVocabSize)) / 2n;
  const bound = halfBound > 1n ? halfBound : 1n;
  const rng = defaultRng(BigInt(config.seed) + BigInt(SEED_LAYER_STRIDE) * BigInt(layerId));
  return rng.integers(0n, bound, config.maxNgramSize).map((r) => r * 2n + 1n);
}

function searchPrimes(config: ResolvedNgramHashConfig): Map<number, number[][]> {
  const seen = new Set<number>();
  const out = new Map<number, number[][]>();
  for (const layerId of config.layerIds) {
    const perOrder: number[][] = [];
    for (let n = 2; n <= config.maxNgramSize; n++) {
      const heads: number[] = [];
      let start = config.engramVocabSize[n - 2] - 1;
      for (let h = 0; h < config.nHeadPerNgram; h++) {
        const p = findNextPrime(start, seen);
        if (p > 0x7fffffff) {
          throw new RangeError(
            `config.engramVocabSize[${n - 2}] = ${config.engramVocabSize[n - 2]} leads to prime ${p} above 2^31-1: per-head ids would not fit int32`,
          );
        }
        seen.add(p);
        heads.push(p);
        start = p;
      }
      perOrder.push(heads);
    }
    out.set(layerId, perOrder);
  }
  return out;
}

function layerState(multipliers: bigint[], primes: number[][]): LayerState {
  const flat = primes.flat();
  const offsets: number[] = [];
  let rows = 0;
  for (const p of flat) {
    offsets.push(rows);
    rows += p;
  }
  return { multipliers: BigInt64Array.from(multipliers), primes, offsets, tableRows: rows };
}

export class NgramHashMapping {
  readonly config: ResolvedNgramHashConfig;
  readonly tokenizer: CompressedTokenizer;
  readonly compressedVocabSize: number;
  /** The pad id after compression (what shifts past the start or a DEAD token see). */
  readonly compressedPadId: number;
  private readonly layers: Map<number, LayerState>;
  private readonly tableCache = new Map<string, { multipliers: BigInt64Array; primes: BigUint64Array; offsets?: BigInt64Array }>();

  constructor(config: Partial<NgramHashConfig> | undefined, tokenizer: CompressedTokenizer, layers?: LayerHashSpec[]) {
    this.config = resolveConfig(config);
    if (!(tokenizer instanceof CompressedTokenizer)) {
      throw new TypeError(`tokenizer must be a CompressedTokenizer, got ${describe(tokenizer)}`);
    }
    this.tokenizer = tokenizer;
    this.compressedVocabSize = tokenizer.compressedVocabSize;
    const expected = this.config.compressedVocabSize;
    if (expected !== undefined && expected !== this.compressedVocabSize) {
      throw new RangeError(
        `tokenizer compresses to ${this.compressedVocabSize} ids but config.compressedVocabSize is ${expected}: ` +
          `the multipliers were drawn against ${expected}, so this tokenizer would hash every n-gram differently`,
      );
    }
    if (this.config.padId >= tokenizer.vocabSize) {
      throw new RangeError(`config.padId = ${this.config.padId} is outside the tokenizer's vocabulary [0, ${tokenizer.vocabSize})`);
    }
    this.compressedPadId = tokenizer.lookup[this.config.padId];
    this.layers = new Map();
    if (layers !== undefined) {
      this.adoptLayers(layers);
    } else {
      const primes = searchPrimes(this.config);
      for (const id of this.config.layerIds) {
        this.layers.set(id, layerState(drawMultipliers(this.config, id, this.compressedVocabSize), primes.get(id)!));
      }
    }
  }

  private adoptLayers(layers: LayerHashSpec[]): void {
    const { layerIds, maxNgramSize, nHeadPerNgram } = this.config;
    if (!Array.isArray(layers) || layers.length !== layerIds.length) {
      throw new RangeError(`spec.layers must have one entry per layer id (${layerIds.length}), got ${describe(layers)}`);
    }
    layers.forEach((l, i) => {
      if (l.layerId !== layerIds[i]) throw new RangeError(`spec.layers[${i}].layerId must be ${layerIds[i]}, got ${describe(l.layerId)}`);
      if (!Array.isArray(l.multipliers) || l.multipliers.length !== maxNgramSize) {
        throw new RangeError(`spec.layers[${i}].multipliers must have ${maxNgramSize} entries, got ${describe(l.multipliers)}`);
      }
      l.multipliers.forEach((m, k) => {
        if (typeof m !== 'bigint' || m < -INT64_MAX - 1n || m > INT64_MAX) {
          throw new RangeError(`spec.layers[${i}].multipliers[${k}] must be an int64, got ${describe(m)}`);
        }
        // The reference draws 2 * integers(0, half_bound) + 1: positive and odd.
        if (m <= 0n || m % 2n === 0n) throw new RangeError(`spec.layers[${i}].multipliers[${k}] must be a positive odd int64 (as the reference draws them), got ${describe(m)}`);
      });
      if (!Array.isArray(l.primes) || l.primes.length !== maxNgramSize - 1) {
        throw new RangeError(`spec.layers[${i}].primes must have ${maxNgramSize - 1} rows, got ${describe(l.primes)}`);
      }
      l.primes.forEach((row, n) => {
        if (!Array.isArray(row) || row.length !== nHeadPerNgram) {
          throw new RangeError(`spec.layers[${i}].primes[${n}] must have ${nHeadPerNgram} entries, got ${describe(row)}`);
        }
        row.forEach((p, h) => {
          requireInteger(`spec.layers[${i}].primes[${n}][${h}]`, p, 2, 0x7fffffff);
          if (!isPrime(p)) throw new RangeError(`spec.layers[${i}].primes[${n}][${h}] must be a prime (the reference's head moduli are), got ${p}`);
        });
      });
      this.layers.set(l.layerId, layerState(l.multipliers, l.primes.map((r) => r.slice())));
    });
  }

  private layer(layerId: number): LayerState {
    const state = typeof layerId === 'number' ? this.layers.get(layerId) : undefined;
    if (state === undefined) {
      throw new RangeError(`layerId must be one of [${this.config.layerIds.join(', ')}], got ${describe(layerId)}`);
    }
    return state;
  }

  /** int64 multipliers of a layer, one per token of the longest n-gram. */
  multipliers(layerId: number): BigInt64Array {
    return this.layer(layerId).multipliers.slice();
  }

  /** primes[ngram - 2][head] of a layer. */
  primes(layerId: number): number[][] {
    return this.layer(layerId).primes.map((r) => r.slice());
  }

  /** Offset of each head (2-gram heads first) in the layer's concatenated table. */
  headOffsets(layerId: number): number[] {
    return this.layer(layerId).offsets.slice();
  }

  /** Rows of the layer's concatenated table (the sum of its primes). */
  tableRows(layerId: number): number {
    return this.layer(layerId).tableRows;
  }

  /** Row ids per token and layer: (maxNgramSize - 1) * nHeadPerNgram (one per head of each n-gram order). */
  get rowsPerToken(): number {
    return (this.config.maxNgramSize - 1) * this.config.nHeadPerNgram;
  }

  /** The same as rowsPerToken (the name it had first). */
  get headsPerLayer(): number {
    return this.rowsPerToken;
  }

  /**
   * The paper demo's hash: per-head ids [B, T, (maxNgramSize-1) * nHeadPerNgram] of one
   * layer (2-gram heads first), pad before the sequence start, no mask, no history.
   */
  hash(inputIds: IdArray, shape: [number, number], layerId: number, options: HashOptions = {}): Int32Array {
    const args = this.prepare(inputIds, shape, [layerId], options, false, {});
    native().ngramHashes(args);
    return args.out as Int32Array;
  }

  /** hash() on a worker thread. */
  async hashAsync(inputIds: IdArray, shape: [number, number], layerId: number, options: HashOptions = {}): Promise<Int32Array> {
    const args = this.prepare(inputIds, shape, [layerId], options, false, {});
    await native().ngramHashesAsync(args);
    return args.out as Int32Array;
  }

  /**
   * DeepSeek-V4.1's hash for every layer: global row ids [B, T, layers, cols] (each head's
   * offset into its layer's table added), DEAD positions from tokenMask blocking the
   * look-back, and a history carried across calls so any split of a sequence into chunks
   * hashes exactly like one call.
   */
  hashRows(inputIds: IdArray, shape: [number, number], options: HashRowsOptions = {}): HashRowsResult {
    const args = this.prepare(inputIds, shape, this.layerSubset(options), options, true, options);
    native().ngramHashes(args);
    return { rowIds: args.out, history: args.historyOut! };
  }

  /** hashRows() on a worker thread. */
  async hashRowsAsync(inputIds: IdArray, shape: [number, number], options: HashRowsOptions = {}): Promise<HashRowsResult> {
    const args = this.prepare(inputIds, shape, this.layerSubset(options), options, true, options);
    await native().ngramHashesAsync(args);
    return { rowIds: args.out, history: args.historyOut! };
  }

  private layerSubset(options: HashRowsOptions): number[] {
    if (options === null || typeof options !== 'object' || options.layers === undefined) return this.config.layerIds;
    const layers = options.layers;
    if (!Array.isArray(layers) || layers.length === 0) throw new TypeError(`options.layers must be a non-empty array of layer ids, got ${describe(layers)}`);
    layers.forEach((id, i) => {
      if (!this.config.layerIds.includes(id)) {
        throw new RangeError(`options.layers[${i}] = ${describe(id)} is not one of this mapping's layers [${this.config.layerIds}]`);
      }
    });
    if (new Set(layers).size !== layers.length) throw new RangeError(`options.layers has a repeated layer id: [${layers}]`);
    return layers;
  }

  private prepare(
    inputIds: IdArray,
    shape: [number, number],
    layerIds: number[],
    options: HashOptions,
    globalRows: boolean,
    rows: HashRowsOptions,
  ): NativeHashArgs {
    if (options === null || typeof options !== 'object') throw new TypeError(`options must be an object, got ${describe(options)}`);
    const states = layerIds.map((id) => this.layer(id));
    const [batch, seqLen] = requireShape('shape', shape);
    const positions = batch * seqLen;
    const ids = requireIds('inputIds', inputIds, positions, this.tokenizer.vocabSize, true);
    const device = resolveDevice(requireDevice('options.device', options.device), options.deviceIndex ?? 0);
    const deviceIndex = options.deviceIndex === undefined ? 0 : requireInteger('options.deviceIndex', options.deviceIndex, 0, 1024);
    const threads = options.threads === undefined ? 0 : requireInteger('options.threads', options.threads, 1, 4096);
    const { maxNgramSize, nHeadPerNgram } = this.config;
    const keep = maxNgramSize - 1;
    const cols = this.rowsPerToken;
    const total = positions * layerIds.length * cols;

    let mask: Uint8Array | undefined;
    let history: Int32Array | undefined;
    let int64 = false;
    if (globalRows) {
      mask = rows.tokenMask === undefined ? undefined : toMask(rows.tokenMask, positions);
      history = rows.history === undefined ? undefined : toHistory(rows.history, batch * keep, this.compressedVocabSize);
      const output = rows.output ?? 'auto';
      if (output !== 'auto' && output !== 'int32' && output !== 'int64') {
        throw new RangeError(`options.output must be 'auto', 'int32' or 'int64', got ${describe(output)}`);
      }
      const needs64 = states.some((s) => s.tableRows > INT32_ROWS);
      if (output === 'int32' && needs64) {
        throw new RangeError(`options.output 'int32' cannot hold row ids of a table with more than 2^31 rows`);
      }
      int64 = output === 'int64' || (output === 'auto' && needs64);
    }
    const { multipliers, primes, offsets } = this.nativeTables(layerIds, globalRows);
    const out = outputBuffer(options.out, total, int64);
    refuseOverlap('options.out', out, 'inputIds', inputIds);
    refuseOverlap('options.out', out, 'options.tokenMask', mask);
    refuseOverlap('options.out', out, 'options.history', history);
    return {
      batch,
      seqLen,
      layers: layerIds.length,
      maxNgram: maxNgramSize,
      headsPerNgram: nHeadPerNgram,
      padId: this.compressedPadId,
      compressedVocabSize: this.compressedVocabSize,
      ids,
      mask,
      history,
      lookup: this.tokenizer.lookup,
      multipliers,
      primes,
      offsets,
      out,
      historyOut: globalRows ? new Int32Array(batch * keep) : undefined,
      device,
      deviceIndex,
      threads,
    };
  }

  /** The constants the addon reads for a set of layers, built once per set. */
  private nativeTables(layerIds: number[], globalRows: boolean): { multipliers: BigInt64Array; primes: BigUint64Array; offsets?: BigInt64Array } {
    const key = `${globalRows ? 'rows' : 'heads'}:${layerIds.join(',')}`;
    const hit = this.tableCache.get(key);
    if (hit) return hit;
    const { maxNgramSize } = this.config;
    const cols = this.rowsPerToken;
    const primes = new BigUint64Array(layerIds.length * cols);
    const offsets = globalRows ? new BigInt64Array(layerIds.length * cols) : undefined;
    const multipliers = new BigInt64Array(layerIds.length * maxNgramSize);
    layerIds.forEach((id, l) => {
      const s = this.layer(id);
      multipliers.set(s.multipliers, l * maxNgramSize);
      s.primes.flat().forEach((p, c) => {
        primes[l * cols + c] = BigInt(p);
        if (offsets) offsets[l * cols + c] = BigInt(s.offsets[c]);
      });
    });
    const tables = { multipliers, primes, offsets };
    this.tableCache.set(key, tables);
    return tables;
  }

  /** The exact hash specification, for JSON (multipliers as decimal strings). */
  toSpec(options: { includeLookup?: boolean } = {}): HashSpecJson {
    const spec: HashSpecJson = {
      format: 'engram-kernels/hash-spec',
      version: 1,
      config: { ...this.config, engramVocabSize: this.config.engramVocabSize.slice(), layerIds: this.config.layerIds.slice() },
      compressedVocabSize: this.compressedVocabSize,
      compressedPadId: this.compressedPadId,
      layers: this.config.layerIds.map((id) => ({
        layerId: id,
        multipliers: Array.from(this.layer(id).multipliers, (m) => m.toString()),
        primes: this.primes(id),
      })),
    };
    if (options.includeLookup) spec.lookup = Array.from(this.tokenizer.lookup);
    return spec;
  }

  /**
   * A mapping with exactly the values of a spec (e.g. written by a PyTorch run). The
   * tokenizer comes from the spec's lookup, or must be given and compress identically.
   */
  static fromSpec(spec: HashSpecJson, tokenizer?: CompressedTokenizer): NgramHashMapping {
    if (spec === null || typeof spec !== 'object' || spec.format !== 'engram-kernels/hash-spec' || spec.version !== 1) {
      throw new TypeError(`spec must be an engram-kernels/hash-spec version 1 object, got ${describe(spec)}`);
    }
    if (spec.lookup !== undefined && !Array.isArray(spec.lookup)) throw new TypeError(`spec.lookup must be a list of compressed ids, got ${describe(spec.lookup)}`);
    const tok = tokenizer ?? (spec.lookup !== undefined ? CompressedTokenizer.fromLookup(spec.lookup) : undefined);
    if (tok === undefined) throw new TypeError('spec has no lookup: pass the tokenizer it was made with');
    if (spec.lookup !== undefined && tokenizer !== undefined) {
      const same = spec.lookup.length === tokenizer.vocabSize && spec.lookup.every((v, i) => v === tokenizer.lookup[i]);
      if (!same) throw new RangeError('spec.lookup differs from the given tokenizer\'s compression');
    }
    if (spec.compressedVocabSize !== tok.compressedVocabSize) {
      throw new RangeError(`spec.compressedVocabSize is ${spec.compressedVocabSize} but the tokenizer compresses to ${tok.compressedVocabSize}`);
    }
    if (!Array.isArray(spec.layers)) throw new TypeError(`spec.layers must be an array, got ${describe(spec.layers)}`);
    // Array.from throughout, not map: in a sparse list (a JS object, not parsed JSON) the
    // holes are entries too, and are refused like any other bad entry.
    const layers: LayerHashSpec[] = Array.from(spec.layers as unknown[] as Array<HashSpecJson['layers'][number]>, (l, i) => {
      if (l === null || typeof l !== 'object') throw new TypeError(`spec.layers[${i}] must be an object with layerId, multipliers and primes, got ${describe(l)}`);
      if (!Array.isArray(l.multipliers)) throw new TypeError(`spec.layers[${i}].multipliers must be a list of decimal integer strings, got ${describe(l.multipliers)}`);
      const multipliers = Array.from(l.multipliers as unknown[], (m, k) => {
        try {
          if (typeof m !== 'string' && typeof m !== 'number' && typeof m !== 'bigint') throw new TypeError('not a number');
          return BigInt(m);
        } catch {
          throw new TypeError(`spec.layers[${i}].multipliers[${k}] must be a decimal integer string, got ${describe(m)}`);
        }
      });
      const primes = Array.isArray(l.primes) ? Array.from(l.primes as unknown[], (row) => (Array.isArray(row) ? Array.from(row as unknown[]) : row)) : l.primes;
      return { layerId: l.layerId, multipliers, primes: primes as LayerHashSpec['primes'] };
    });
    const mapping = new NgramHashMapping(spec.config, tok, layers);
    if (mapping.compressedPadId !== spec.compressedPadId) {
      throw new RangeError(`spec.compressedPadId is ${spec.compressedPadId} but the tokenizer maps padId to ${mapping.compressedPadId}`);
    }
    return mapping;
  }
}

function outputBuffer(out: unknown, total: number, int64: boolean): Int32Array | BigInt64Array {
  // The kernel writes every element of the output: recycled memory needs no zeroing.
  if (out === undefined) return int64 ? newBigInt64(total, { overwritten: true }) : newInt32(total, { overwritten: true });
  const want = int64 ? 'BigInt64Array' : 'Int32Array';
  if (!(int64 ? out instanceof BigInt64Array : out instanceof Int32Array)) {
    throw new TypeError(`options.out must be a ${want} here, got ${describe(out)}`);
  }
  if ((out as Int32Array | BigInt64Array).length !== total) {
    throw new RangeError(`options.out has ${(out as Int32Array).length} elements but the result needs ${total}`);
  }
  return out as Int32Array | BigInt64Array;
}

function toMask(value: unknown, length: number): Uint8Array {
  return requireTokenMask('options.tokenMask', value, length);
}

function toHistory(value: unknown, length: number, compressedVocabSize: number): Int32Array {
  if (value === null || typeof value !== 'object' || typeof (value as ArrayLike<unknown>).length !== 'number') {
    throw new TypeError(`options.history must be an Int32Array, got ${describe(value)}`);
  }
  const src = value as ArrayLike<unknown>;
  if (src.length !== length) throw new RangeError(`options.history has ${src.length} elements but [batch, maxNgramSize-1] needs ${length}`);
  const out = src instanceof Int32Array ? src : new Int32Array(length);
  for (let i = 0; i < length; i++) {
    const v = src[i];
    if (typeof v !== 'number' || !Number.isInteger(v)) throw new TypeError(`options.history[${i}] must be an integer, got ${describe(v)}`);
    if (v < -1 || v >= compressedVocabSize) {
      throw new RangeError(`options.history[${i}] = ${v} is outside [-1, ${compressedVocabSize})`);
    }
    if (out !== src) out[i] = v;
  }
  return out;
}
