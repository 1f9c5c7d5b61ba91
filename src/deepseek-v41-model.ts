// DeepSeek-V4.1's Engram as a model: both layers from a checkpoint directory, the
// tokenizer bound to the config's compressed size, one hashing call per chunk for both.
import fs from 'node:fs';
import path from 'node:path';

import { CompressedTokenizer } from './compressed-tokenizer.js';
import { DeepseekV41Engram, type V41ForwardResult } from './deepseek-v41-engram.js';
import { engramPrefix, findEngramTensors, parseV41Config, type V41CheckpointConfig } from './deepseek-v41-checkpoint.js';
import { NgramHashMapping } from './ngram-hash-mapping.js';
import { describe, requireInteger, requireShape, type Device, type IdArray } from './validate.js';

export interface V41ModelForwardOptions {
  /** [B, S]: 0 = DEAD (image spans, pads): blocks the look-back and shuts the gate. */
  tokenMask?: Uint8Array | ArrayLike<number | boolean>;
  /** [B, maxNgramSize - 1] n-gram history from the previous chunk. */
  history?: Int32Array;
  threads?: number;
}

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
  static fromCheckpoint(dir: string, options: { tokenizer?: CompressedTokenizer | string; device?: Device } = {}): DeepseekV41EngramModel {
    if (typeof dir !== 'string' || !fs.existsSync(dir)) throw new Error(`checkpoint directory ${describe(dir)} does not exist`);
    const configFile = path.join(dir, 'config.json');
    if (!fs.existsSync(configFile)) throw new Error(`'${dir}' has no config.json`);
    const config = parseV41Config(JSON.parse(fs.readFileSync(configFile, 'utf8')), configFile);
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
    const { tensors, files } = findEngramTensors(dir);
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
        { device: options.device },
      );
      const prefix = engramPrefix(id);
      layer.loadStateDict(Object.fromEntries(Object.entries(tensors).filter(([k]) => k.startsWith(prefix))), { prefix });
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
    for (const step of plan.steps) {
      step.layer.run(step.args);
      step.commit();
    }
    return { outputs: plan.outputs, history: plan.history };
  }

  /** A decode state for `batch` sequences: the n-gram history carried between steps. */
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

  /** forward() with each layer on a worker thread (hashing runs first, on this one). */
  async forwardAsync(
    streamsByLayer: ReadonlyMap<number, Float32Array> | Record<number, Float32Array>,
    inputIds: IdArray,
    shape: [number, number],
    options: V41ModelForwardOptions = {},
  ): Promise<{ outputs: Map<number, V41ForwardResult>; history: Int32Array }> {
    const plan = this.plan(streamsByLayer, inputIds, shape, options);
    for (const step of plan.steps) {
      await step.layer.runAsync(step.args);
      step.commit();
    }
    return { outputs: plan.outputs, history: plan.history };
  }

  private plan(
    streamsByLayer: ReadonlyMap<number, Float32Array> | Record<number, Float32Array>,
    inputIds: IdArray,
    shape: [number, number],
    options: V41ModelForwardOptions,
  ) {
    const [batch, seqLen] = requireShape('shape', shape);
    const streams = streamsByLayer instanceof Map ? streamsByLayer : new Map(Object.entries(streamsByLayer).map(([k, v]) => [Number(k), v]));
    for (const id of streams.keys()) if (!this.layers.has(id)) throw new RangeError(`streamsByLayer has layer ${id}, not one of the model's layers [${[...this.layers.keys()]}]`);
    const hashed = this.hashMapping.hashRows(inputIds, [batch, seqLen], { tokenMask: options.tokenMask, history: options.history, device: 'cpu', threads: options.threads });
    const cols = this.hashMapping.headsPerLayer;
    const stride = cols * this.config.layerIds.length;
    const outputs = new Map<number, V41ForwardResult>();
    const steps: Array<{ layer: DeepseekV41Engram; args: ReturnType<DeepseekV41Engram['prepare']>['args']; commit: () => void }> = [];
    this.config.layerIds.forEach((id, i) => {
      const hidden = streams.get(id);
      if (hidden === undefined) return;
      const layer = this.layers.get(id)!;
      const { args, result, commit } = layer.prepare(hidden, hashed.rowIds, [batch, seqLen], { tokenMask: options.tokenMask, threads: options.threads }, stride, i * cols);
      steps.push({ layer, args, commit });
      outputs.set(id, result);
    });
    return { steps, outputs, history: hashed.history };
  }
}
