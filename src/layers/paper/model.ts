// Several Engram layers sharing one NgramHashMapping, as the reference builds them: the
// token ids are hashed once for every layer (before the first layer runs) and each layer
// gathers its own slice of the row ids.
import { CompressedTokenizer } from '../../hashing/compressed-tokenizer.js';
import { Engram, type EngramForwardResult, type EngramOptions, type EngramState } from './layer.js';
import { refuseStrippedTable, requireTierOptions, type TableTierOptions } from '../../table/tiers.js';
import type { Prefetch } from '../../table/prefetch.js';
import type { EngramConfig } from './config.js';
import { NgramHashMapping } from '../../hashing/ngram-hash-mapping.js';
import { readSafetensors, writeSafetensors } from '../../core/safetensors.js';
import { TABLE_SCALE_NAME, TABLE_TENSOR_DTYPES, TABLE_NAME } from './weights.js';
import { describe, requireShape, type IdArray } from '../../core/validate.js';

/** Row ids of every layer for one chunk: [B, T, layers, cols] plus the next n-gram history. */
export interface EngramRows {
  shape: [number, number];
  inputIds: IdArray;
  rowIds: Int32Array | BigInt64Array;
  history: Int32Array;
}

/** Streaming state of every layer (one conv history each, one shared n-gram history). */
export type EngramModelState = Map<number, EngramState>;

/** Rows hashed once for every layer, and each layer's pages prefetched (see EngramModel.prefetch). */
export interface EngramModelPrefetch {
  rows: EngramRows;
  /** Per layer: pass to forwardLayer (done through options.ticket) or release. */
  layers: ReadonlyMap<number, Prefetch>;
  /** Releases every layer's pages not used yet. */
  release(): void;
}

export const MODEL_CONFIG_METADATA_KEY = 'engram_model_config';

export const defaultLayerPrefix = (layerId: number) => `layers.${layerId}.engram.`;

export class EngramModel {
  readonly hashMapping: NgramHashMapping;
  readonly layers: ReadonlyMap<number, Engram>;

  constructor(config: Partial<Omit<EngramConfig, 'layerId'>> = {}, options: Omit<EngramOptions, 'hashMapping'> = {}) {
    if (options === null || typeof options !== 'object') throw new TypeError(`options must be an object, got ${describe(options)}`);
    this.hashMapping = new NgramHashMapping(config, options.tokenizer ?? CompressedTokenizer.deepseekV3());
    const layers = new Map<number, Engram>();
    this.hashMapping.config.layerIds.forEach((layerId, i) => {
      const seed = (options.seed ?? 0) * 1024 + i;
      layers.set(layerId, new Engram({ ...config, layerId }, { ...options, seed, hashMapping: this.hashMapping }));
    });
    this.layers = layers;
  }

  layer(layerId: number): Engram {
    const l = this.layers.get(layerId);
    if (l === undefined) throw new RangeError(`layerId ${describe(layerId)} is not one of the model's layers [${[...this.layers.keys()]}]`);
    return l;
  }

  /**
   * Remote tier: resolves once every layer's store is reached and holds its table;
   * rejects with the first reason one does not. Other tiers: resolves at once.
   */
  async remoteReady(): Promise<void> {
    await Promise.all([...this.layers.values()].map((l) => l.remoteReady()));
  }

  /** Closes every layer's remote-tier connection (a process with one open does not exit). */
  async close(): Promise<void> {
    await Promise.all([...this.layers.values()].map((l) => l.close()));
  }

  newState(batch: number): EngramModelState {
    return new Map([...this.layers].map(([id, l]) => [id, l.newState(batch)]));
  }

  /** Hashes a chunk for every layer at once (the state's n-gram history is read, not changed). */
  hash(inputIds: IdArray, shape: [number, number], options: { state?: EngramModelState; threads?: number } = {}): EngramRows {
    const [batch, seqLen] = requireShape('shape', shape);
    const first = options.state?.get(this.hashMapping.config.layerIds[0]);
    const r = this.hashMapping.hashRows(inputIds, [batch, seqLen], { history: first?.ngramHistory, device: 'cpu', threads: options.threads });
    return { shape: [batch, seqLen], inputIds, rowIds: r.rowIds, history: r.history };
  }

  /**
   * Hashes a chunk once and starts the page copies of every paged layer, so the copies
   * for layer L overlap the compute before it. Pass the result to forwardLayer as the
   * rows and as options.ticket.
   */
  prefetch(inputIds: IdArray, shape: [number, number], options: { state?: EngramModelState; threads?: number } = {}): EngramModelPrefetch {
    const rows = this.hash(inputIds, shape, options);
    const layers = this.hashMapping.config.layerIds.length;
    const cols = this.hashMapping.rowsPerToken;
    const tickets = new Map<number, Prefetch>();
    const history = options.state?.get(this.hashMapping.config.layerIds[0])?.ngramHistory;
    try {
      this.hashMapping.config.layerIds.forEach((id, index) => {
        tickets.set(id, this.layer(id).prefetchRows(inputIds, rows.shape, { rowIds: rows.rowIds, stride: layers * cols, offset: index * cols, history: rows.history }, history));
      });
    } catch (err) {
      for (const t of tickets.values()) t.release();
      throw err;
    }
    return { rows, layers: tickets, release: () => tickets.forEach((t) => t.isUsed || t.release()) };
  }

  /** One layer on its hidden states [B, T, hcMult, hidden] with rows from hash() (or prefetch().rows). */
  forwardLayer(
    layerId: number,
    hiddenStates: Float32Array,
    rows: EngramRows,
    options: { state?: EngramModelState; threads?: number; ticket?: EngramModelPrefetch } = {},
  ): EngramForwardResult {
    const layer = this.layer(layerId);
    if (options.ticket !== undefined) {
      if (options.ticket.rows !== rows) throw new RangeError('options.ticket was prefetched for other rows: pass prefetch().rows');
      return layer.forward(hiddenStates, rows.inputIds, rows.shape, { threads: options.threads, state: options.state?.get(layerId), ticket: options.ticket.layers.get(layerId) });
    }
    const index = this.hashMapping.config.layerIds.indexOf(layerId);
    const cols = this.hashMapping.rowsPerToken;
    const layers = this.hashMapping.config.layerIds.length;
    const want = rows.shape[0] * rows.shape[1] * layers * cols;
    if (rows.rowIds.length !== want) throw new RangeError(`rows.rowIds has ${rows.rowIds.length} ids but [${rows.shape}] x ${layers} layers x ${cols} needs ${want}`);
    return layer.forward(hiddenStates, rows.inputIds, rows.shape, {
      threads: options.threads,
      state: options.state?.get(layerId),
      rows: { rowIds: rows.rowIds, stride: layers * cols, offset: index * cols, history: rows.history },
    });
  }

  /**
   * Every layer given hidden states ([B, T, hcMult, hidden] by layer id), as
   * DeepseekV41EngramModel.forward runs them: the ids hashed once, every paged layer's
   * pages prefetched before the first layer runs (or from options.ticket), the layers in
   * the model's order. The state, when given, carries every layer's history.
   */
  forward(
    hiddenByLayer: ReadonlyMap<number, Float32Array> | Record<number, Float32Array>,
    inputIds: IdArray,
    shape: [number, number],
    options: { state?: EngramModelState; threads?: number; ticket?: EngramModelPrefetch } = {},
  ): Map<number, EngramForwardResult> {
    if (options === null || typeof options !== 'object') throw new TypeError(`options must be an object, got ${describe(options)}`);
    const hidden = hiddenByLayer instanceof Map ? hiddenByLayer : new Map(Object.entries(hiddenByLayer ?? {}).map(([k, v]) => [Number(k), v as Float32Array]));
    for (const id of hidden.keys()) this.layer(id); // unknown layer ids are refused before any work
    const ticket = options.ticket ?? this.prefetch(inputIds, shape, { state: options.state, threads: options.threads });
    const outputs = new Map<number, EngramForwardResult>();
    try {
      for (const id of this.hashMapping.config.layerIds) {
        const h = hidden.get(id);
        if (h !== undefined) outputs.set(id, this.forwardLayer(id, h, ticket.rows, { state: options.state, threads: options.threads, ticket }));
      }
    } finally {
      if (options.ticket === undefined) ticket.release(); // pages of layers not run, or of a failed call
    }
    return outputs;
  }

  /** Every layer's weights under `prefix(layerId)` (default 'layers.{id}.engram.'). */
  saveSafetensors(file: string, prefix: (layerId: number) => string = defaultLayerPrefix): void {
    const tensors = Object.assign({}, ...[...this.layers].map(([id, l]) => l.stateDict({ prefix: prefix(id) })));
    const { layerId: _ignored, ...config } = this.layer(this.hashMapping.config.layerIds[0]).config;
    writeSafetensors(file, tensors, { format: 'pt', [MODEL_CONFIG_METADATA_KEY]: JSON.stringify(config) });
  }

  static fromSafetensors(
    file: string,
    options: Omit<EngramOptions, 'hashMapping' | 'init'> & {
      config?: Partial<Omit<EngramConfig, 'layerId'>>;
      prefix?: (layerId: number) => string;
      /** Where each layer's table lives and what caches it (one pager per layer, cacheBytes each). */
      table?: TableTierOptions;
    } = {},
  ): EngramModel {
    const tier = options.table === undefined ? undefined : requireTierOptions('options.table', options.table);
    const st = readSafetensors(file);
    let config = options.config;
    if (config === undefined) {
      const text = st.metadata[MODEL_CONFIG_METADATA_KEY];
      if (text === undefined) throw new TypeError(`'${file}' has no ${MODEL_CONFIG_METADATA_KEY} metadata: pass options.config`);
      config = JSON.parse(text) as Partial<EngramConfig>;
    }
    const prefix = options.prefix ?? defaultLayerPrefix;
    // The tables keep their stored format unless options.tableDtype asks for another.
    const firstTable = st.tensors[prefix(new NgramHashMapping(config, options.tokenizer ?? CompressedTokenizer.deepseekV3()).config.layerIds[0]) + TABLE_NAME];
    const stored = firstTable === undefined ? undefined : TABLE_TENSOR_DTYPES[firstTable.dtype];
    const model = new EngramModel(config, { ...options, init: 'none', tableDtype: options.tableDtype ?? stored });
    for (const [id, layer] of model.layers) {
      layer.loadStateDict(st.tensors, { prefix: prefix(id) });
      layer.tableSource = { path: file, data: st.tensors[prefix(id) + TABLE_NAME], scales: st.tensors[prefix(id) + TABLE_SCALE_NAME], tensor: prefix(id) + TABLE_NAME };
      refuseStrippedTable(layer.tableSource, tier);
      if (tier !== undefined) layer.usePager(tier);
    }
    return model;
  }
}
