// DeepSeek-V4.1's Engram as a model: both layers from a checkpoint directory, the
// tokenizer bound to the config's compressed size, one hashing call per chunk for both.
import fs from 'node:fs';
import path from 'node:path';

import { CompressedTokenizer } from '../../hashing/compressed-tokenizer.js';
import { DeepseekV41Engram, type V41ForwardResult } from './layer.js';
import { assembleV41Tensors, engramPrefix, findEngramTensors, parseV41Config, readCheckpointJson, type V41CheckpointConfig } from './checkpoint.js';
import { refuseStrippedTable, requireTierOptions, type TableTierOptions } from '../../table/tiers.js';
import { Prefetch, prefetchKey } from '../../table/prefetch.js';
import { NgramHashMapping } from '../../hashing/ngram-hash-mapping.js';
import type { PagerTicket } from '../../table/pager.js';
import { describe, requireInteger, requireShape, type Device, type IdArray } from '../../core/validate.js';

export interface V41ModelForwardOptions {
  /** `[B, S]`: 0 = DEAD (image spans, pads): blocks the look-back and shuts the gate. */
  tokenMask?: Uint8Array | ArrayLike<number | boolean>;
  /** [B, maxNgramSize - 1] n-gram history from the previous chunk. */
  history?: Int32Array;
  threads?: number;
  /** From prefetch() with the same ids, shape, history and mask. */
  ticket?: V41ModelPrefetch;
}

/** Rows hashed once for both layers, and each paged layer's pages on their way (the library's one ticket type). */
export type V41ModelPrefetch = Prefetch;

export class DeepseekV41EngramModel {
  readonly config: V41CheckpointConfig;
  readonly hashMapping: NgramHashMapping;
  readonly layers: ReadonlyMap<number, DeepseekV41Engram>;
  /** The safetensors files the tensors were mapped from. */
  readonly files: string[];

  private constructor(config: V41CheckpointConfig, mapping: NgramHashMapping, layers: Map<number, DeepseekV41Engram>, files: string[]) {
    this.config = config;
    this.hashMapping = mapping;
    this.layers = layers;
    this.files = files;
  }

  /**
   * Opens a checkpoint directory: config.json, the Engram tensors (memory-mapped: a table
   * is paged in on demand, never read into RAM whole), and the tokenizer (tokenizer.json
   * in the directory unless given; a compressed size other than the config's is refused).
   */
  static fromCheckpoint(
    dir: string,
    options: {
      tokenizer?: CompressedTokenizer | string;
      device?: Device;
      /** Where each table lives and what caches it (one pager per layer, cacheBytes each). */
      table?: TableTierOptions;
    } = {},
  ): DeepseekV41EngramModel {
    const tier = options.table === undefined ? undefined : requireTierOptions('options.table', options.table);
    if (typeof dir !== 'string' || !fs.existsSync(dir)) throw new Error(`checkpoint directory ${describe(dir)} does not exist`);
    const configFile = path.join(dir, 'config.json');
    if (!fs.existsSync(configFile)) throw new Error(`'${dir}' has no config.json`);
    const config = parseV41Config(readCheckpointJson(configFile), configFile);
    const tokenizer =
      options.tokenizer instanceof CompressedTokenizer
        ? options.tokenizer
        : CompressedTokenizer.fromFile(typeof options.tokenizer === 'string' ? options.tokenizer : path.join(dir, 'tokenizer.json'));
    const mapping = new NgramHashMapping(
      {
        engramVocabSize: config.engramVocabSize,
        maxNgramSize: config.maxNgramSize,
        nHeadPerNgram: config.nHeads,
        layerIds: config.layerIds,
        padId: config.padId,
        seed: 0,
        compressedVocabSize: config.compressedVocabSize,
      },
      tokenizer,
    );
    config.layerIds.forEach((id, i) => {
      if (mapping.tableRows(id) !== config.numEmbeddings[i]) {
        throw new RangeError(`config.json: engram_num_embeddings[${i}] = ${config.numEmbeddings[i]} but the hashing config gives layer ${id} a table of ${mapping.tableRows(id)} rows`);
      }
    });
    const { tensors, files, fileOf } = findEngramTensors(dir);
    // Where each table lies (its first shard when split), before replicated tensors are assembled.
    const tableFile = Object.fromEntries(Object.entries(tensors).map(([name, t]) => [name, fileOf[name] ?? t.rowParts?.[0].path]));
    assembleV41Tensors(tensors, config);
    const layers = new Map<number, DeepseekV41Engram>();
    config.layerIds.forEach((id, i) => {
      const layer = new DeepseekV41Engram(
        {
          hiddenSize: config.hiddenSize,
          hcMult: config.hcMult,
          maxNgramSize: config.maxNgramSize,
          nHeads: config.nHeads,
          headDim: config.headDim,
          numEmbeddings: config.numEmbeddings[i],
          rmsNormEps: config.rmsNormEps,
        },
        { device: options.device, hashing: { mapping, layerId: id } },
      );
      const prefix = engramPrefix(id);
      layer.loadStateDict(Object.fromEntries(Object.entries(tensors).filter(([k]) => k.startsWith(prefix))), { prefix });
      const embed = prefix + 'embed.weight';
      const scale = prefix + 'embed.scale';
      // A table split by rows across shards: each shard's file holds a row range (rowParts).
      layer.tableSource = { path: tableFile[embed]!, data: tensors[embed], scales: tensors[scale], scalesPath: tableFile[scale], tensor: embed };
      refuseStrippedTable(layer.tableSource, tier);
      if (tier !== undefined) layer.usePager(tier);
      layers.set(id, layer);
    });
    return new DeepseekV41EngramModel(config, mapping, layers, files);
  }

  /**
   * Hashes the chunk once for every layer, then applies each layer to its hidden streams
   * (streamsByLayer: layer id -> [B, S, hc, D]). Returns each layer's output and the
   * n-gram history for the next chunk.
   */
  forward(
    streamsByLayer: ReadonlyMap<number, Float32Array> | Record<number, Float32Array>,
    inputIds: IdArray,
    shape: [number, number],
    options: V41ModelForwardOptions = {},
  ): { outputs: Map<number, V41ForwardResult>; history: Int32Array } {
    const plan = this.plan(streamsByLayer, inputIds, shape, options);
    try {
      for (const step of plan.steps) step.layer.run(step);
    } finally {
      for (const step of plan.steps) step.ticket?.release();
    }
    return { outputs: plan.outputs, history: plan.history };
  }

  /** A decode state for `batch` sequences: the n-gram history carried between steps. */
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

  newState(batch: number): { history: Int32Array } {
    return { history: new Int32Array(requireInteger('batch', batch, 0, 0x7fffffff) * (this.config.maxNgramSize - 1)).fill(-1) };
  }

  /**
   * One decode step: one token per sequence (tokenIds [B]), each layer's hidden streams
   * [B, 1, hc, D]; state.history advances (after a successful call only).
   */
  step(
    state: { history: Int32Array },
    streamsByLayer: ReadonlyMap<number, Float32Array> | Record<number, Float32Array>,
    tokenIds: IdArray,
    options: { tokenMask?: Uint8Array | ArrayLike<number | boolean>; threads?: number } = {},
  ): Map<number, V41ForwardResult> {
    if (state === null || typeof state !== 'object' || !(state.history instanceof Int32Array)) {
      throw new TypeError(`state must come from model.newState(batch), got ${describe(state)}`);
    }
    const batch = state.history.length / (this.config.maxNgramSize - 1);
    const r = this.forward(streamsByLayer, tokenIds, [batch, 1], { ...options, history: state.history });
    state.history = r.history;
    return r.outputs;
  }

  /** One layer of the model (as EngramModel.forwardLayer): forward() with that layer's hidden streams only. */
  forwardLayer(layerId: number, hiddenStreams: Float32Array, inputIds: IdArray, shape: [number, number], options: V41ModelForwardOptions = {}): V41ForwardResult {
    if (!this.layers.has(layerId)) throw new RangeError(`layerId ${describe(layerId)} is not one of the model's layers [${[...this.layers.keys()]}]`);
    return this.forward(new Map([[layerId, hiddenStreams]]), inputIds, shape, options).outputs.get(layerId)!;
  }

  /** forward() with each layer on a worker thread (hashing runs first, on this one). */
  async forwardAsync(
    streamsByLayer: ReadonlyMap<number, Float32Array> | Record<number, Float32Array>,
    inputIds: IdArray,
    shape: [number, number],
    options: V41ModelForwardOptions = {},
  ): Promise<{ outputs: Map<number, V41ForwardResult>; history: Int32Array }> {
    const plan = this.plan(streamsByLayer, inputIds, shape, options, true);
    try {
      for (const step of plan.steps) await step.layer.runAsync(step);
    } finally {
      for (const step of plan.steps) step.ticket?.release();
    }
    return { outputs: plan.outputs, history: plan.history };
  }

  private plan(
    streamsByLayer: ReadonlyMap<number, Float32Array> | Record<number, Float32Array>,
    inputIds: IdArray,
    shape: [number, number],
    options: V41ModelForwardOptions,
    uploadAsync = false,
  ) {
    const [batch, seqLen] = requireShape('shape', shape);
    const streams = streamsByLayer instanceof Map ? streamsByLayer : new Map(Object.entries(streamsByLayer).map(([k, v]) => [Number(k), v]));
    for (const id of streams.keys()) if (!this.layers.has(id)) throw new RangeError(`streamsByLayer has layer ${id}, not one of the model's layers [${[...this.layers.keys()]}]`);
    const given = options.ticket;
    if (given !== undefined) {
      const mismatch = 'options.ticket was prefetched for other ids, shape, history or mask';
      Prefetch.check(given, this, prefetchKey(inputIds, [batch, seqLen], options), { foreign: "options.ticket must come from this model's prefetch()", call: mismatch, context: mismatch });
    }
    const hashed = given?.rows ?? this.hashMapping.hashRows(inputIds, [batch, seqLen], { tokenMask: options.tokenMask, history: options.history, device: 'cpu', threads: options.threads });
    const cols = this.hashMapping.rowsPerToken;
    const stride = cols * this.config.layerIds.length;
    const outputs = new Map<number, V41ForwardResult>();
    const steps: Array<ReturnType<DeepseekV41Engram['prepare']> & { layer: DeepseekV41Engram }> = [];
    try {
      this.config.layerIds.forEach((id, i) => {
        const hidden = streams.get(id);
        if (hidden === undefined) return;
        const layer = this.layers.get(id)!;
        // Unpaged layers prefetch here, before the first runs: later layers' copies overlap.
        const prepared = layer.prepare(hidden, hashed.rowIds, [batch, seqLen], { tokenMask: options.tokenMask, threads: options.threads, ticket: given?.tickets.get(id) }, stride, i * cols, uploadAsync);
        steps.push({ ...prepared, layer });
        outputs.set(id, prepared.result);
      });
    } catch (err) {
      if (given === undefined) for (const step of steps) step.ticket?.release(); // given tickets stay the caller's
      throw err;
    }
    if (given !== undefined) {
      given.take();
      for (const id of given.tickets.keys()) if (!streams.has(id)) given.releaseLayer(id); // layers not run this call
    }
    return { steps, outputs, history: hashed.history };
  }

  /**
   * Hashes a chunk once for both layers and starts the page copies of every paged layer,
   * so they overlap the compute before each layer. Pass it to forward() as options.ticket
   * with the same ids, shape, history and mask; or release() it.
   */
  prefetch(inputIds: IdArray, shape: [number, number], options: Omit<V41ModelForwardOptions, 'ticket'> = {}): V41ModelPrefetch {
    const [batch, seqLen] = requireShape('shape', shape);
    const hashed = this.hashMapping.hashRows(inputIds, [batch, seqLen], { tokenMask: options.tokenMask, history: options.history, device: 'cpu', threads: options.threads });
    const cols = this.hashMapping.rowsPerToken;
    const stride = cols * this.config.layerIds.length;
    const tickets = new Map<number, PagerTicket | undefined>();
    try {
      this.config.layerIds.forEach((id, i) => tickets.set(id, this.layers.get(id)!.prefetchRows(hashed.rowIds, stride, i * cols)));
    } catch (err) {
      for (const t of tickets.values()) t?.release();
      throw err;
    }
    const rows = { rowIds: hashed.rowIds, stride, offset: 0, history: hashed.history };
    return new Prefetch(this, prefetchKey(inputIds, [batch, seqLen], options), [batch, seqLen], rows, tickets);
  }
}
