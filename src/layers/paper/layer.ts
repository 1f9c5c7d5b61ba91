// The paper's Engram layer (engram_demo_v1.py's `Engram`): hashed n-gram rows gathered
// from one concatenated table, a context-aware gate per hyper-connection branch, and a
// ShortConv, computed by the native kernels. Also the streaming state for decode.
import os from 'node:os';

import { CompressedTokenizer } from '../../hashing/compressed-tokenizer.js';
import type { Tensor } from '../../core/tensor.js';
import { CONV_NORM_EPS, GATE_NORM_EPS, resolveEngramConfig, type EngramConfig, type ResolvedEngramConfig } from './config.js';
import { geometry, stateDictOf, TABLE_SCALE_NAME, TABLE_TENSOR_DTYPES, TABLE_NAME, weightsFromStateDict, type EngramWeights, type Geometry } from './weights.js';
import { native, TABLE_DTYPE_CODES, type NativeDeviceWeightsHandle, type NativeEngramForwardArgs, type NativeEngramUploadArgs, type NativeLinearHandle } from '../../native/index.js';
import { NgramHashMapping } from '../../hashing/ngram-hash-mapping.js';
import { readSafetensors, writeSafetensors } from '../../core/safetensors.js';
import { layerRowIds, refuseStrippedTable, requireTierOptions, type TableTierOptions } from '../../table/tiers.js';
import { Prefetch, prefetchKey, type HashedRows } from '../../table/prefetch.js';
import { EngramTable, requireTableDtype, type TableDtype } from '../../table/table.js';
import { PagedLayer } from '../shared/paged-layer.js';
import { describe, requireInteger, requireShape, type Device, type IdArray, refuseOverlap } from '../../core/validate.js';
import { newFloat32, newInt32, ownedCopy } from '../../core/output.js';

export interface EngramOptions {
  /** 'auto' (default): CUDA when a device is visible, else the CPU. */
  device?: Device;
  deviceIndex?: number;
  /** Storage of the table: 'f32' (default), 'bf16', 'f16' or 'f8e4m3' (UE8M0 scales). */
  tableDtype?: TableDtype;
  /** Compressed tokenizer (default: DeepSeek-V3's). Ignored when `hashMapping` is given. */
  tokenizer?: CompressedTokenizer;
  /** Share one mapping between the layers of a model (as the reference does). */
  hashMapping?: NgramHashMapping;
  /** Seed of the deterministic initialisation (default 0). */
  seed?: number;
  /** 'random' (default): the reference's init distributions; 'none': load weights before use. */
  init?: 'random' | 'none';
}

/** Per-sequence state for chunked prefill and token-by-token decode. */
export interface EngramState {
  readonly batch: number;
  /** [B, maxNgramSize-1] compressed ids before the next chunk (-1 = none). */
  ngramHistory: Int32Array;
  /** [B, (kernelSize-1)*maxNgramSize, hcMult, hidden] normalised conv inputs. */
  convHistory: Float32Array;
}

export interface EngramForwardOptions {
  /** CPU threads (default: all). */
  threads?: number;
  /** Carry n-gram and conv history across calls; updated in place after a successful call. */
  state?: EngramState;
  /**
   * Also return the gathered embeddings e [B, T, (maxNgramSize-1) * nEmbedPerNgram] (a
   * Float32Array of that size is filled, to reuse across calls). Without it the rows are
   * gathered inside the projection GEMM's packing and never written out whole.
   */
  returnEmbeddings?: boolean | Float32Array;
  /** Row ids already hashed for this layer (EngramModel hashes once for all layers). */
  rows?: HashedRows;
  /** Per-stage seconds of the native call (gather, projections, gating, conv) written here. */
  stageSeconds?: Float64Array;
  /** Output buffer [B, T, hcMult, hidden] to fill instead of allocating one (reuse it across calls). */
  out?: Float32Array;
  /** From prefetch() with the same ids (and state): the gather waits only on its pages. */
  ticket?: Prefetch;
}

/** forwardRows() options: forward()'s, less what needs token ids (state, ticket, rows). */
export type EngramRowsForwardOptions = Omit<EngramForwardOptions, 'state' | 'ticket' | 'rows'>;

export interface EngramForwardResult {
  /** [B, T, hcMult, hidden] */
  output: Float32Array;
  /** `[B, T, hcMult]`: the gate of each branch (what the memory contributed). */
  gates: Float32Array;
  embeddings?: Float32Array;
}

/** safetensors metadata key holding the layer's config as JSON. */
export const CONFIG_METADATA_KEY = 'engram_config';

const INIT_STREAMS = { table: 1, keyValue: 2, keyValueBias: 3, conv: 4 } as const;

function randomFloat32(n: number, seed: number, distribution: 'normal' | 'uniform', scale: number): Float32Array {
  const out = new Float32Array(n);
  if (n > 0) {
    native().fillRandom({
      table: out.buffer,
      tableByteOffset: 0,
      tableScalesByteOffset: 0,
      tableDtype: TABLE_DTYPE_CODES.f32,
      tableRows: n,
      tableCols: 1,
      seed,
      distribution,
      scale,
      threads: 0,
    });
  }
  return out;
}

export class Engram extends PagedLayer<EngramWeights, NativeDeviceWeightsHandle, NativeEngramUploadArgs> {
  readonly config: ResolvedEngramConfig;
  readonly hashMapping: NgramHashMapping;
  readonly tableDtype: TableDtype;
  readonly geometry: Geometry;
  /** The gates of the last forward call ([B, T, hcMult]), or undefined before the first. */
  gates: Float32Array | undefined;
  private keyValue: NativeLinearHandle | undefined;

  constructor(config: Partial<EngramConfig> = {}, options: EngramOptions = {}) {
    super(options); // checks options, resolves the device
    this.config = resolveEngramConfig(config);
    this.tableDtype = requireTableDtype('options.tableDtype', options.tableDtype ?? 'f32');
    if (options.hashMapping !== undefined) {
      if (!(options.hashMapping instanceof NgramHashMapping)) throw new TypeError(`options.hashMapping must be an NgramHashMapping, got ${describe(options.hashMapping)}`);
      const m = options.hashMapping.config;
      const c = this.config;
      const same = m.maxNgramSize === c.maxNgramSize && m.nHeadPerNgram === c.nHeadPerNgram && m.padId === c.padId && m.seed === c.seed &&
        m.layerIds.join() === c.layerIds.join() && m.engramVocabSize.join() === c.engramVocabSize.join();
      if (!same) throw new RangeError('options.hashMapping was built from another hashing config than this layer\'s');
      this.hashMapping = options.hashMapping;
    } else {
      this.hashMapping = new NgramHashMapping(this.config, options.tokenizer ?? CompressedTokenizer.deepseekV3());
    }
    this.geometry = geometry(this.config, this.hashMapping.tableRows(this.config.layerId));
    const init = options.init ?? 'random';
    if (init !== 'random' && init !== 'none') throw new RangeError(`options.init must be 'random' or 'none', got ${describe(init)}`);
    if (init === 'random') this.setWeights(this.randomWeights(requireInteger('options.seed', options.seed ?? 0, 0, 2 ** 40)));
  }

  /** The reference's init: table N(0, 1); Linear and conv U(+-1/sqrt(fan_in)); norms 1. */
  private randomWeights(seed: number): EngramWeights {
    const g = this.geometry;
    const stream = (s: number) => seed * 16 + s;
    const bound = 1 / Math.sqrt(g.features);
    const ones = () => new Float32Array(g.hc * g.hidden).fill(1);
    return {
      table: EngramTable.random(g.rows, g.cols, this.tableDtype, { seed: stream(INIT_STREAMS.table) }),
      keyValueWeight: randomFloat32((g.hc + 1) * g.hidden * g.features, stream(INIT_STREAMS.keyValue), 'uniform', bound),
      keyValueBias: randomFloat32((g.hc + 1) * g.hidden, stream(INIT_STREAMS.keyValueBias), 'uniform', bound),
      norm1: ones(),
      norm2: ones(),
      convNorm: ones(),
      convWeight: randomFloat32(g.hc * g.hidden * g.kernelSize, stream(INIT_STREAMS.conv), 'uniform', 1 / Math.sqrt(g.kernelSize)),
    };
  }

  private setWeights(w: EngramWeights): void {
    const g = this.geometry;
    // Pack first: if it throws, the previous weights stay.
    const handle = native().packLinear({ weight: w.keyValueWeight, bias: w.keyValueBias, n: (g.hc + 1) * g.hidden, k: g.features });
    // The small weights every call reads, in the addon's memory: async calls pin them
    // rather than copy them (the caller's arrays stay the caller's).
    const owned = { norm1: ownedCopy(w.norm1), norm2: ownedCopy(w.norm2), convNorm: ownedCopy(w.convNorm), convWeight: ownedCopy(w.convWeight) };
    this.swapWeights({ ...w, ...owned }); // drops the pager of the previous table and its device copy
    this.keyValue = handle;
  }

  /**
   * Hashes `inputIds` and starts copying the pages their rows need (when paged), so the
   * copies overlap whatever runs before this layer. Pass the result to forward() with the
   * same ids and state; or release() it.
   */
  prefetch(inputIds: IdArray, shape: [number, number], options: { state?: EngramState; threads?: number } = {}): Prefetch {
    if (options === null || typeof options !== 'object') throw new TypeError(`options must be an object, got ${describe(options)}`);
    const [batch, seqLen] = requireShape('shape', shape);
    const state = options.state === undefined ? undefined : this.requireState(options.state);
    if (state !== undefined && state.batch !== batch) throw new RangeError(`options.state holds ${state.batch} sequences but the call has batch ${batch}`);
    const hashed = this.hashMapping.hashRows(inputIds, [batch, seqLen], {
      layers: [this.config.layerId],
      history: state?.ngramHistory,
      device: 'cpu',
      threads: options.threads,
    });
    const rows = { rowIds: hashed.rowIds, stride: this.hashMapping.rowsPerToken, offset: 0, history: hashed.history };
    return this.prefetchRows(inputIds, [batch, seqLen], rows, state?.ngramHistory);
  }

  /** @internal prefetch() for rows already hashed (EngramModel hashes once for all layers). */
  prefetchRows(inputIds: IdArray, shape: [number, number], rows: HashedRows, historyBefore: Int32Array | undefined): Prefetch {
    const ticket = this.prefetchTable(() => layerRowIds(rows.rowIds, rows.stride, rows.offset, this.hashMapping.rowsPerToken));
    const key = prefetchKey(inputIds, [shape[0], shape[1]], { history: historyBefore });
    return new Prefetch(this, key, [shape[0], shape[1]], rows, new Map([[this.config.layerId, ticket]]));
  }

  /** Checks a ticket against the call it is used for. */
  private checkTicket(ticket: unknown, inputIds: IdArray, shape: [number, number], state: EngramState | undefined): Prefetch {
    const checked = Prefetch.check(ticket, this, prefetchKey(inputIds, shape, { history: state?.ngramHistory }), {
      foreign: "options.ticket must come from this layer's prefetch()",
      call: 'options.ticket was prefetched for other input ids or another shape',
      context: 'options.ticket was prefetched with another streaming state',
    });
    const paged = checked.tickets.get(this.config.layerId);
    if (paged !== undefined && paged.pager !== this.tablePager) {
      throw new Error('options.ticket pinned pages of a pager this layer no longer reads through (loadStateDict() or usePager() since replaced it): call prefetch() again');
    }
    return checked;
  }

  protected missingWeightsMessage(): string {
    return 'this Engram layer has no weights yet: call loadStateDict() or use Engram.fromSafetensors()';
  }

  protected uploadNow(args: NativeEngramUploadArgs): NativeDeviceWeightsHandle {
    return native().engramUploadCuda(args);
  }

  protected uploadOnWorker(args: NativeEngramUploadArgs): Promise<NativeDeviceWeightsHandle> {
    return native().engramUploadCudaAsync(args);
  }

  protected uploadArgs(w: EngramWeights): NativeEngramUploadArgs {
    const g = this.geometry;
    const table = this.tablePager?.device === 'cuda' ? this.tablePager.nativeUploadArgs() : w.table.nativeArgs();
    return {
      ...table,
      hc: g.hc,
      hidden: g.hidden,
      rowsPerToken: this.hashMapping.rowsPerToken,
      kernelSize: g.kernelSize,
      keyValueWeight: w.keyValueWeight,
      keyValueBias: w.keyValueBias,
      norm1: w.norm1,
      norm2: w.norm2,
      convNorm: w.convNorm,
      convWeight: w.convWeight,
      deviceIndex: this.deviceIndex,
    };
  }

  /**
   * Loads weights by the reference's state_dict names (`prefix` e.g. 'layers.1.engram.').
   * Every tensor is checked before anything changes: a failed load keeps the old weights.
   */
  loadStateDict(record: Record<string, Tensor>, options: { prefix?: string } = {}): void {
    const prefix = options.prefix ?? '';
    if (typeof prefix !== 'string') throw new TypeError(`options.prefix must be a string, got ${describe(prefix)}`);
    this.setWeights(weightsFromStateDict(record, this.geometry, this.tableDtype, prefix));
  }

  /** The weights by the reference's state_dict names (views, not copies). */
  stateDict(options: { prefix?: string } = {}): Record<string, Tensor> {
    const prefix = options.prefix ?? '';
    const dict = stateDictOf(this.requireWeights(), this.geometry);
    return Object.fromEntries(Object.entries(dict).map(([k, v]) => [prefix + k, v]));
  }

  /**
   * A layer from a safetensors file by the reference's names (memory-mapped: the table is
   * read from the file on demand, not copied). The config comes from the file's
   * `engram_config` metadata (written by saveSafetensors) unless options.config is given;
   * the table keeps its stored format unless options.tableDtype asks for another.
   */
  static fromSafetensors(file: string, options: EngramOptions & { prefix?: string; config?: Partial<EngramConfig>; table?: TableTierOptions } = {}): Engram {
    const tier = options.table === undefined ? undefined : requireTierOptions('options.table', options.table);
    const st = readSafetensors(file);
    let config = options.config;
    if (config === undefined) {
      const text = st.metadata[CONFIG_METADATA_KEY];
      if (text === undefined) throw new TypeError(`'${file}' has no ${CONFIG_METADATA_KEY} metadata: pass options.config`);
      try {
        config = JSON.parse(text) as Partial<EngramConfig>;
      } catch {
        throw new TypeError(`'${file}' has an ${CONFIG_METADATA_KEY} metadata entry that is not JSON`);
      }
    }
    const prefix = options.prefix ?? '';
    const table = st.tensors[prefix + TABLE_NAME];
    const stored = table === undefined ? undefined : TABLE_TENSOR_DTYPES[table.dtype];
    const tableDtype = options.tableDtype ?? stored ?? 'f32';
    if (tier?.tier === 'file' && tableDtype !== stored) {
      throw new RangeError(`tier 'file' reads the table as stored (${stored ?? 'missing'}); options.tableDtype '${tableDtype}' would need a converted copy in RAM`);
    }
    const engram = new Engram(config, { ...options, init: 'none', tableDtype });
    engram.loadStateDict(st.tensors, { prefix });
    engram.tableSource = { path: file, data: st.tensors[prefix + TABLE_NAME], scales: st.tensors[prefix + TABLE_SCALE_NAME], tensor: prefix + TABLE_NAME };
    refuseStrippedTable(engram.tableSource, tier);
    if (tier !== undefined) engram.usePager(tier);
    return engram;
  }

  /** Writes the layer (reference names, optional prefix) with its config in the metadata. */
  saveSafetensors(file: string, options: { prefix?: string } = {}): void {
    writeSafetensors(file, this.stateDict(options), { format: 'pt', [CONFIG_METADATA_KEY]: JSON.stringify(this.config) });
  }

  /** A fresh streaming state for `batch` sequences (nothing seen yet). */
  newState(batch: number): EngramState {
    requireInteger('batch', batch, 0, 0x7fffffff);
    const g = this.geometry;
    const keep = this.config.maxNgramSize - 1;
    // Refused before allocating: a state larger than half this machine's memory (or than one
    // typed array holds) is a mistake, not a request to take the process down.
    const convValues = batch * this.convHistoryLength * g.hc * g.hidden;
    const bytes = 4 * (batch * keep + convValues);
    if (bytes > os.totalmem() / 2 || convValues > 2 ** 32 - 1) {
      throw new RangeError(`newState(${batch}) would take ${(bytes / 2 ** 30).toFixed(1)} GiB of histories (${batch} x ${this.convHistoryLength} x ${g.hc} x ${g.hidden} conv values): more than half of this machine's ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB`);
    }
    return {
      batch,
      ngramHistory: newInt32(batch * keep).fill(-1),
      convHistory: newFloat32(batch * this.convHistoryLength * g.hc * g.hidden),
    };
  }

  /** Positions of conv history per sequence: (kernelSize - 1) * dilation. */
  get convHistoryLength(): number {
    return (this.config.kernelSize - 1) * this.config.maxNgramSize;
  }

  /** The layer on hidden states [B, T, hcMult, hidden] and raw token ids [B, T]. */
  forward(hiddenStates: Float32Array, inputIds: IdArray, shape: [number, number], options: EngramForwardOptions = {}): EngramForwardResult {
    const { args, result, commit, ticket } = this.prepare(hiddenStates, inputIds, shape, options);
    try {
      if (ticket?.ticket !== undefined) this.tablePager!.wait(ticket.ticket);
      native().engramForward(args);
    } finally {
      ticket?.finish();
    }
    commit();
    return result;
  }

  /**
   * The layer on row ids already hashed into its table ([B, T, rowsPerToken], Int32Array
   * or BigInt64Array), as DeepseekV41Engram.forwardRows takes them: one whole sequence per
   * row of the batch (no streaming state: its n-gram history needs the token ids).
   */
  forwardRows(hiddenStates: Float32Array, rowIds: Int32Array | BigInt64Array, shape: [number, number], options: EngramRowsForwardOptions = {}): EngramForwardResult {
    return this.forward(hiddenStates, [], shape, this.rowsOptions(rowIds, shape, options));
  }

  /** forwardRows() on a worker thread. */
  forwardRowsAsync(hiddenStates: Float32Array, rowIds: Int32Array | BigInt64Array, shape: [number, number], options: EngramRowsForwardOptions = {}): Promise<EngramForwardResult> {
    return this.forwardAsync(hiddenStates, [], shape, this.rowsOptions(rowIds, shape, options));
  }

  private rowsOptions(rowIds: Int32Array | BigInt64Array, shape: [number, number], options: EngramRowsForwardOptions): EngramForwardOptions {
    if (options === null || typeof options !== 'object') throw new TypeError(`options must be an object, got ${describe(options)}`);
    for (const key of ['state', 'ticket', 'rows'] as const) {
      if ((options as EngramForwardOptions)[key] !== undefined) throw new TypeError(`options.${key} is not taken by forwardRows (use forward with token ids)`);
    }
    if (!(rowIds instanceof Int32Array || rowIds instanceof BigInt64Array)) throw new TypeError(`rowIds must be an Int32Array or BigInt64Array, got ${describe(rowIds)}`);
    const [batch, seqLen] = requireShape('shape', shape);
    const per = this.hashMapping.rowsPerToken;
    if (rowIds.length !== batch * seqLen * per) throw new RangeError(`rowIds has ${rowIds.length} ids but [${batch}, ${seqLen}, ${per}] needs ${batch * seqLen * per}`);
    return { ...options, rows: { rowIds, stride: per, offset: 0, history: new Int32Array(0) } };
  }

  /** forward() on a worker thread (the event loop stays free). */
  async forwardAsync(hiddenStates: Float32Array, inputIds: IdArray, shape: [number, number], options: EngramForwardOptions = {}): Promise<EngramForwardResult> {
    const { args, result, commit, ticket, upload } = this.prepare(hiddenStates, inputIds, shape, options, true);
    try {
      if (upload !== undefined) args.deviceWeights = await upload;
      if (ticket?.ticket !== undefined) await this.tablePager!.waitAsync(ticket.ticket);
      await native().engramForwardAsync(args);
    } finally {
      ticket?.finish();
    }
    commit();
    return result;
  }

  /** One decode step: hidden rows [B, hcMult, hidden] and one token id per sequence. */
  step(state: EngramState, hiddenRows: Float32Array, tokenIds: IdArray, options: Omit<EngramForwardOptions, 'state'> = {}): EngramForwardResult {
    return this.forward(hiddenRows, tokenIds, [this.requireState(state).batch, 1], { ...options, state });
  }

  private requireState(state: unknown): EngramState {
    const s = state as EngramState;
    if (s === null || typeof s !== 'object' || !(s.ngramHistory instanceof Int32Array) || !(s.convHistory instanceof Float32Array)) {
      throw new TypeError(`state must come from engram.newState(batch), got ${describe(state)}`);
    }
    return s;
  }

  private prepare(hiddenStates: Float32Array, inputIds: IdArray, shape: [number, number], options: EngramForwardOptions, uploadAsync = false) {
    if (options === null || typeof options !== 'object') throw new TypeError(`options must be an object, got ${describe(options)}`);
    const w = this.requireWeights();
    const g = this.geometry;
    const [batch, seqLen] = requireShape('shape', shape);
    if (!(hiddenStates instanceof Float32Array)) throw new TypeError(`hiddenStates must be a Float32Array [B, T, hcMult, hidden], got ${describe(hiddenStates)}`);
    const streams = batch * seqLen * g.hc * g.hidden;
    if (hiddenStates.length !== streams) {
      throw new RangeError(`hiddenStates has ${hiddenStates.length} elements but [${batch}, ${seqLen}, ${g.hc}, ${g.hidden}] needs ${streams}`);
    }
    const threads = options.threads === undefined ? 0 : requireInteger('options.threads', options.threads, 1, 4096);
    const state = options.state === undefined ? undefined : this.requireState(options.state);
    const keep = this.config.maxNgramSize - 1;
    const historyLen = this.convHistoryLength;
    if (state !== undefined) {
      if (state.batch !== batch) throw new RangeError(`options.state holds ${state.batch} sequences but the call has batch ${batch}`);
      const ngram = batch * keep, conv = batch * historyLen * g.hc * g.hidden;
      if (state.ngramHistory.length !== ngram || state.convHistory.length !== conv) {
        throw new RangeError(
          `options.state was made for a layer of another shape: its histories hold ${state.ngramHistory.length} n-gram and ${state.convHistory.length} conv values, ` +
            `this layer's need ${ngram} ([${batch}, ${keep}]) and ${conv} ([${batch}, ${historyLen}, ${g.hc}, ${g.hidden}]): use this layer's newState(${batch})`,
        );
      }
    }
    let ticket = options.ticket === undefined ? undefined : this.checkTicket(options.ticket, inputIds, [batch, seqLen], state);
    let rows = ticket?.rows ?? options.rows;
    if (rows === undefined) {
      const hashed = this.hashMapping.hashRows(inputIds, [batch, seqLen], {
        layers: [this.config.layerId],
        history: state?.ngramHistory,
        device: 'cpu',
        threads: options.threads,
      });
      rows = { rowIds: hashed.rowIds, stride: this.hashMapping.rowsPerToken, offset: 0, history: hashed.history };
    }
    let output: Float32Array;
    if (options.out !== undefined) {
      if (!(options.out instanceof Float32Array)) throw new TypeError(`options.out must be a Float32Array, got ${describe(options.out)}`);
      if (options.out.length !== streams) throw new RangeError(`options.out has ${options.out.length} elements but the result needs ${streams}`);
      if (options.out.buffer === hiddenStates.buffer) throw new RangeError('options.out must not share memory with hiddenStates');
      output = options.out;
    } else {
      // The gate-and-convolution kernel (or the device's copy back) writes every element.
      output = newFloat32(streams, { overwritten: true });
    }
    const gates = new Float32Array(batch * seqLen * g.hc);
    let embeddings: Float32Array | undefined;
    if (options.returnEmbeddings instanceof Float32Array) {
      if (options.returnEmbeddings.length !== batch * seqLen * g.features) throw new RangeError(`options.returnEmbeddings must be a Float32Array of ${batch * seqLen * g.features} elements, got ${describe(options.returnEmbeddings)}`);
      embeddings = options.returnEmbeddings;
      refuseOverlap('options.returnEmbeddings', embeddings, 'hiddenStates', hiddenStates);
      refuseOverlap('options.returnEmbeddings', embeddings, 'options.out', output);
    } else if (options.returnEmbeddings) {
      embeddings = newFloat32(batch * seqLen * g.features);
    }
    const convHistoryOut = state ? newFloat32(state.convHistory.length) : undefined;
    if (options.stageSeconds !== undefined && !(options.stageSeconds instanceof Float64Array && options.stageSeconds.length === 4)) {
      throw new TypeError(`options.stageSeconds must be a Float64Array(4), got ${describe(options.stageSeconds)}`);
    }
    // Everything is checked: from here the ticket is this call's (released after it).
    if (ticket === undefined && this.tablePager !== undefined) ticket = this.prefetchRows(inputIds, [batch, seqLen], rows, undefined);
    ticket?.take();
    // Paged: the gather reads the cache, at the rows the pager translated.
    const paged = ticket?.ticket;
    // forwardAsync uploads the weights on a worker thread and waits for it there.
    const upload = uploadAsync ? this.startUpload() : undefined;
    const args: NativeEngramForwardArgs = {
      ...(paged !== undefined ? this.tablePager!.nativeCacheArgs() : w.table.nativeArgs()),
      batch,
      seqLen,
      hc: g.hc,
      hidden: g.hidden,
      rowsPerToken: this.hashMapping.rowsPerToken,
      kernelSize: g.kernelSize,
      dilation: this.config.maxNgramSize,
      hiddenStates,
      rowIds: paged !== undefined ? paged.cacheRows : rows.rowIds,
      rowIdsStride: paged !== undefined ? this.hashMapping.rowsPerToken : rows.stride,
      rowIdsOffset: paged !== undefined ? 0 : rows.offset,
      keyValue: this.keyValue!,
      norm1: w.norm1,
      norm2: w.norm2,
      convNorm: w.convNorm,
      convWeight: w.convWeight,
      gateEps: GATE_NORM_EPS,
      convEps: CONV_NORM_EPS,
      convHistory: state?.convHistory,
      out: output,
      gates,
      embeddings,
      convHistoryOut,
      stageSeconds: options.stageSeconds,
      threads,
      deviceWeights: this.device === 'cuda' && upload === undefined ? this.deviceWeightsNow() : undefined,
    };
    const history = rows.history;
    const commit = () => {
      this.gates = gates;
      if (state !== undefined) {
        state.ngramHistory = history;
        state.convHistory = convHistoryOut!;
      }
    };
    return { args, result: { output, gates, embeddings } as EngramForwardResult, commit, ticket, upload };
  }
}
