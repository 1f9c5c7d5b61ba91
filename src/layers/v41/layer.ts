// DeepSeek-V4.1's Engram layer (the released model): 24 fp8 rows per token gathered and
// dequantised on the fly, kv = wkv . rows (one GEMM, no bias), and per hidden stream a
// gate from the normalised dot product of the stream and its key (weighted by
// q_weight * k_weight), shut where the token mask is 0, added as out = h + gate * value.
import { elementCount, toFloat32, type Tensor } from '../../core/tensor.js';
import { requireTensor } from '../paper/weights.js';
import { packWeight, weightFromTensors } from '../../moe/quantized-weights.js';
import { native, type NativeLinearHandle, type NativeV41DeviceHandle, type NativeV41ForwardArgs, type NativeV41UploadArgs } from '../../native/index.js';
import { layerRowIds } from '../../table/tiers.js';
import { PagerTicket } from '../../table/pager.js';
import { PagedLayer } from '../shared/paged-layer.js';
import { NgramHashMapping } from '../../hashing/ngram-hash-mapping.js';
import { EngramTable, SCALE_BLOCK, TABLE_TENSOR_DTYPES } from '../../table/table.js';
import { describe, requireFinite, requireInteger, requireShape, type Device, type IdArray, requireTokenMask, refuseOverlap, requireFiniteValues } from '../../core/validate.js';
import { newFloat32, ownedCopy } from '../../core/output.js';

export interface DeepseekV41EngramConfig {
  hiddenSize: number;
  hcMult: number;
  maxNgramSize: number;
  /** heads per n-gram order */
  nHeads: number;
  headDim: number;
  /** rows of this layer's table */
  numEmbeddings: number;
  rmsNormEps: number;
}

/** The released geometry of layer 1 (layer 14's table has 384,016,682 rows). */
export const DEEPSEEK_V41_ENGRAM_CONFIG: Readonly<DeepseekV41EngramConfig> = Object.freeze({
  hiddenSize: 5120,
  hcMult: 4,
  maxNgramSize: 4,
  nHeads: 8,
  headDim: 256,
  numEmbeddings: 384_006_168,
  rmsNormEps: 1e-20,
});

export interface V41ForwardOptions {
  /** `[B, S]`: 0/false shuts the gate of that token (output = input). */
  tokenMask?: Uint8Array | ArrayLike<number | boolean>;
  threads?: number;
  /**
   * Also return the dequantised rows [B, S, cols * headDim] (a Float32Array of that size
   * is filled, to reuse across calls). Without it the rows are gathered inside the wkv
   * GEMM's packing and never written out whole.
   */
  returnRows?: boolean | Float32Array;
  out?: Float32Array;
  /** Float64Array(3): seconds of the gather, the wkv GEMM and the gate, written by the call. */
  stageSeconds?: Float64Array;
  /** From prefetchRows() with the same row ids: the gather waits only on its pages. */
  ticket?: PagerTicket;
}

export interface V41ForwardResult {
  output: Float32Array;
  gates: Float32Array;
  rows?: Float32Array;
}

const shapeText = (s: readonly number[]) => `[${s.join(', ')}]`;

interface V41Weights {
  table: EngramTable;
  wkv: NativeLinearHandle;
  qWeight: Float32Array;
  kWeight: Float32Array;
  /** CUDA only: wkv as fp32, kept for the device upload. */
  wkvFloat?: Float32Array;
}

export class DeepseekV41Engram extends PagedLayer<V41Weights, NativeV41DeviceHandle, NativeV41UploadArgs> {
  readonly config: DeepseekV41EngramConfig;
  /** Gates [B, S, hc] of the last call. */
  gates: Float32Array | undefined;
  /** The hashing forward() uses (undefined: the layer takes row ids only). */
  readonly hashing: { mapping: NgramHashMapping; layerId: number } | undefined;
  private readonly wkvKernelChoice: 'auto' | 'fp32';

  /**
   * options.wkvKernel: 'auto' runs wkv on AVX512-BF16 dot products where the CPU has them
   * (exact products of fp8/bf16 values, summed pairwise by the instruction), else on the
   * fp32 FMA kernel decoding the fp8 codes per panel slice; 'fp32' always takes the latter.
   */
  constructor(
    config: Partial<DeepseekV41EngramConfig> = {},
    options: {
      device?: Device;
      deviceIndex?: number;
      wkvKernel?: 'auto' | 'fp32';
      /** The model's hashing and this layer's id in it: forward() then takes token ids (DeepseekV41EngramModel sets it). */
      hashing?: { mapping: NgramHashMapping; layerId: number };
    } = {},
  ) {
    super(options); // checks options, resolves the device
    if (config === null || typeof config !== 'object') throw new TypeError(`config must be an object, got ${describe(config)}`);
    const c = { ...DEEPSEEK_V41_ENGRAM_CONFIG, ...Object.fromEntries(Object.entries(config).filter(([, v]) => v !== undefined)) };
    this.config = {
      hiddenSize: requireInteger('config.hiddenSize', c.hiddenSize, 1, 1 << 20),
      hcMult: requireInteger('config.hcMult', c.hcMult, 1, 1024),
      maxNgramSize: requireInteger('config.maxNgramSize', c.maxNgramSize, 2, 8),
      nHeads: requireInteger('config.nHeads', c.nHeads, 1, 4096),
      headDim: requireInteger('config.headDim', c.headDim, 1, 1 << 20),
      numEmbeddings: requireInteger('config.numEmbeddings', c.numEmbeddings, 1),
      rmsNormEps: c.rmsNormEps,
    };
    requireFinite('config.rmsNormEps', c.rmsNormEps, 0);
    if (options.wkvKernel !== undefined && options.wkvKernel !== 'auto' && options.wkvKernel !== 'fp32') {
      throw new RangeError(`options.wkvKernel must be 'auto' or 'fp32', got ${describe(options.wkvKernel)}`);
    }
    if (options.hashing !== undefined) {
      const { mapping, layerId } = options.hashing as { mapping: unknown; layerId: unknown };
      if (!(mapping instanceof NgramHashMapping)) throw new TypeError(`options.hashing.mapping must be an NgramHashMapping, got ${describe(mapping)}`);
      if (typeof layerId !== 'number' || !mapping.config.layerIds.includes(layerId)) {
        throw new RangeError(`options.hashing.layerId must be one of the mapping's layers [${mapping.config.layerIds}], got ${describe(layerId)}`);
      }
      if (mapping.rowsPerToken !== this.rowsPerToken) throw new RangeError(`options.hashing.mapping gives ${mapping.rowsPerToken} rows per token but the layer takes ${this.rowsPerToken}`);
      this.hashing = { mapping, layerId };
    }
    this.wkvKernelChoice = options.wkvKernel ?? 'auto';
  }

  /** Row ids gathered per token: (maxNgramSize - 1) * nHeads. */
  get rowsPerToken(): number {
    return (this.config.maxNgramSize - 1) * this.config.nHeads;
  }

  /** The same as rowsPerToken (the name it had first). */
  get cols(): number {
    return this.rowsPerToken;
  }

  /** The CPU kernel the wkv projection runs on ('avx512-bf16' where fp8 inputs allow it). */
  get wkvKernel(): string {
    return native().linearKernel({ weight: this.requireWeights().wkv });
  }

  protected missingWeightsMessage(): string {
    return 'this DeepSeek-V4.1 Engram layer has no weights yet: call loadStateDict()';
  }

  /**
   * Loads `embed.weight` (+ `embed.scale` for fp8), `wkv.weight` (+ `wkv.scale` for fp8),
   * `q_weight`, `k_weight`, under `prefix` (default: none, or the record's single
   * `layers.{L}.engram.` prefix). Every tensor is checked first; a failed load keeps the
   * previous weights.
   */
  loadStateDict(record: Record<string, Tensor>, options: { prefix?: string } = {}): void {
    if (record === null || typeof record !== 'object') throw new TypeError(`state dict must be an object of tensors, got ${describe(record)}`);
    const prefix = options.prefix ?? detectPrefix(Object.keys(record));
    const { hiddenSize: D, hcMult: hc, headDim, numEmbeddings: rows } = this.config;
    const features = this.rowsPerToken * headDim;
    const get = (name: string, optional = false): Tensor | undefined => {
      const v = record[prefix + name];
      if (v === undefined) {
        if (optional) return undefined;
        throw new RangeError(`state dict is missing tensor '${prefix}${name}'`);
      }
      return requireTensor(prefix + name, v);
    };
    const expectShape = (name: string, t: Tensor, shape: number[]) => {
      if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
        throw new RangeError(`tensor '${prefix}${name}' has shape ${shapeText(t.shape)} but the layer expects ${shapeText(shape)}`);
      }
    };
    const expectDtype = (name: string, t: Tensor, allowed: string[]) => {
      if (!allowed.includes(t.dtype)) throw new TypeError(`tensor '${prefix}${name}' is ${t.dtype} but the layer takes ${allowed.join(' or ')}`);
    };
    for (const key of Object.keys(record)) {
      if (!key.startsWith(prefix)) continue;
      const name = key.slice(prefix.length);
      if (!['embed.weight', 'embed.scale', 'wkv.weight', 'wkv.scale', 'q_weight', 'k_weight'].includes(name)) {
        throw new RangeError(`state dict has an unexpected tensor '${key}' (not part of DeepSeek-V4.1's Engram layer)`);
      }
    }

    const embed = get('embed.weight')!;
    expectDtype('embed.weight', embed, ['F8_E4M3', 'BF16', 'F16', 'F32']);
    expectShape('embed.weight', embed, [rows, headDim]);
    const embedScale = get('embed.scale', embed.dtype !== 'F8_E4M3');
    if (embed.dtype === 'F8_E4M3') {
      expectDtype('embed.scale', embedScale!, ['F8_E8M0', 'U8']);
      expectShape('embed.scale', embedScale!, [rows, headDim / SCALE_BLOCK]);
    } else if (embedScale !== undefined) {
      throw new RangeError(`state dict has '${prefix}embed.scale' but '${prefix}embed.weight' is ${embed.dtype}, not F8_E4M3`);
    }
    const wkv = get('wkv.weight')!;
    expectDtype('wkv.weight', wkv, ['F8_E4M3', 'BF16', 'F16', 'F32']);
    expectShape('wkv.weight', wkv, [(hc + 1) * D, features]);
    const wkvScale = get('wkv.scale', wkv.dtype !== 'F8_E4M3');
    if (wkv.dtype === 'F8_E4M3') {
      expectDtype('wkv.scale', wkvScale!, ['F8_E8M0', 'U8']);
      expectShape('wkv.scale', wkvScale!, [Math.ceil(((hc + 1) * D) / SCALE_BLOCK), Math.ceil(features / SCALE_BLOCK)]);
    }
    const q = get('q_weight')!;
    const k = get('k_weight')!;
    for (const [name, t] of [['q_weight', q], ['k_weight', k]] as const) {
      expectDtype(name, t, ['BF16', 'F16', 'F32']);
      expectShape(name, t, [hc, D]);
    }

    // Everything checked: build the new weights, then swap them in.
    const table = EngramTable.fromStored(embed, embedScale, rows, headDim, TABLE_TENSOR_DTYPES[embed.dtype]!);
    const n = (hc + 1) * D;
    // The weights as fp32 (only for the bf16 packing, which checks exactness, and CUDA).
    const dequantized = (): Float32Array => {
      if (wkv.dtype !== 'F8_E4M3') return toFloat32(prefix + 'wkv.weight', wkv);
      const out = new Float32Array(elementCount(wkv.shape));
      native().dequantizeBlockFp8({
        codes: wkv.data.buffer as ArrayBuffer, codesByteOffset: wkv.data.byteOffset,
        scales: wkvScale!.data.buffer as ArrayBuffer, scalesByteOffset: wkvScale!.data.byteOffset,
        rows: n, cols: features, out, threads: 0,
      });
      return out;
    };
    // fp8/bf16 rows times fp8/bf16 weights are exact products in bf16: the AVX512-BF16
    // kernel (where the CPU has it) then runs at twice the fp32 rate with half the bytes.
    // Elsewhere the fp32 kernel reads the weights in their own codes (fp8: 1 byte each).
    const bf16Inputs = table.dtype === 'f8e4m3' || table.dtype === 'bf16';
    const bf16Kernel = this.wkvKernelChoice === 'auto' && bf16Inputs && native().buildInfo().cpuFeatures.includes('avx512bf16');
    // Checked before anything is packed: a NaN or infinity in a weight poisons every output.
    const qWeight = requireFiniteValues(prefix + 'q_weight', toFloat32(prefix + 'q_weight', q));
    const kWeight = requireFiniteValues(prefix + 'k_weight', toFloat32(prefix + 'k_weight', k));
    let wkvFloat: Float32Array | undefined;
    if (wkv.dtype === 'F8_E4M3') {
      // e4m3 has no infinity; its NaN codes are S.1111.111 (0x7f, 0xff).
      const codes = new Uint8Array(wkv.data.buffer as ArrayBuffer, wkv.data.byteOffset, wkv.data.byteLength);
      const bad = codes.findIndex((c) => (c & 0x7f) === 0x7f);
      if (bad >= 0) throw new RangeError(`tensor '${prefix}wkv.weight' holds the e4m3 NaN code 0x${codes[bad].toString(16)} at index ${bad}: weights must be finite`);
      // e8m0's only NaN is 0xff.
      const scales = wkvScale === undefined ? undefined : new Uint8Array(wkvScale.data.buffer as ArrayBuffer, wkvScale.data.byteOffset, wkvScale.data.byteLength);
      const badScale = scales?.indexOf(0xff) ?? -1;
      if (badScale >= 0) throw new RangeError(`tensor '${prefix}wkv.scale' holds the e8m0 NaN code 0xff at index ${badScale}: scales must be finite`);
    } else {
      wkvFloat = requireFiniteValues(prefix + 'wkv.weight', dequantized());
    }
    let packed: NativeLinearHandle;
    if (bf16Kernel && wkvFloat !== undefined) {
      packed = native().packLinear({ weight: wkvFloat, n, k: features, preferBf16: true });
    } else {
      // fp8 codes: read by the fp32 kernel as they are, or decoded once into the bf16
      // kernel's panels (no fp32 copy of the matrix on the way).
      packed = packWeight(weightFromTensors(prefix + 'wkv.weight', wkv, prefix + 'wkv.scale', wkvScale, [n, features]), n, features, undefined, { preferBf16: bf16Kernel });
    }
    if (this.device === 'cuda') wkvFloat ??= dequantized();
    // q/k weights in the addon's memory: async calls pin them rather than copy them.
    this.swapWeights({ table, wkv: packed, qWeight: ownedCopy(qWeight), kWeight: ownedCopy(kWeight), wkvFloat: this.device === 'cuda' ? wkvFloat : undefined });
  }

  /**
   * Starts copying the pages of row ids [B, S, stride] (this layer's at `offset`), so the
   * copies overlap what runs before the layer; undefined when the table is read directly.
   */
  prefetchRows(rowIds: Int32Array | BigInt64Array, stride = this.rowsPerToken, offset = 0): PagerTicket | undefined {
    return this.prefetchTable(() => layerRowIds(rowIds, stride, offset, this.rowsPerToken));
  }

  /**
   * The layer on token ids (as Engram.forward takes them): hashed with the model's mapping
   * for this layer (options.hashing), then forwardRows. Options: forwardRows', plus the
   * token mask (DEAD tokens) and the n-gram history carried from the previous chunk.
   */
  forward(hiddenStreams: Float32Array, inputIds: IdArray, shape: [number, number], options: V41ForwardOptions & { history?: Int32Array } = {}): V41ForwardResult & { history: Int32Array } {
    const { rowIds, history } = this.hashIds(inputIds, shape, options);
    return { ...this.forwardRows(hiddenStreams, rowIds, shape, options), history };
  }

  /** forward() on a worker thread (hashing runs first, on this one). */
  async forwardAsync(hiddenStreams: Float32Array, inputIds: IdArray, shape: [number, number], options: V41ForwardOptions & { history?: Int32Array } = {}): Promise<V41ForwardResult & { history: Int32Array }> {
    const { rowIds, history } = this.hashIds(inputIds, shape, options);
    return { ...(await this.forwardRowsAsync(hiddenStreams, rowIds, shape, options)), history };
  }

  private hashIds(inputIds: IdArray, shape: [number, number], options: V41ForwardOptions & { history?: Int32Array }) {
    if (this.hashing === undefined) {
      throw new Error('this layer has no hashing to take token ids: use forwardRows with row ids, or a layer of DeepseekV41EngramModel (or pass options.hashing)');
    }
    if (options === null || typeof options !== 'object') throw new TypeError(`options must be an object, got ${describe(options)}`);
    return this.hashing.mapping.hashRows(inputIds, shape, { layers: [this.hashing.layerId], tokenMask: options.tokenMask, history: options.history, device: 'cpu', threads: options.threads });
  }

  /** The layer on hidden streams [B, S, hc, D] and row ids [B, S, cols] into its table. */
  forwardRows(hiddenStreams: Float32Array, rowIds: Int32Array | BigInt64Array, shape: [number, number], options: V41ForwardOptions = {}): V41ForwardResult {
    const prepared = this.prepare(hiddenStreams, rowIds, shape, options);
    this.run(prepared);
    return prepared.result;
  }

  async forwardRowsAsync(hiddenStreams: Float32Array, rowIds: Int32Array | BigInt64Array, shape: [number, number], options: V41ForwardOptions = {}): Promise<V41ForwardResult> {
    const prepared = this.prepare(hiddenStreams, rowIds, shape, options, undefined, 0, true);
    await this.runAsync(prepared);
    return prepared.result;
  }

  protected uploadNow(args: NativeV41UploadArgs): NativeV41DeviceHandle {
    return native().v41UploadCuda(args);
  }

  protected uploadOnWorker(args: NativeV41UploadArgs): Promise<NativeV41DeviceHandle> {
    return native().v41UploadCudaAsync(args);
  }

  protected uploadArgs(w: V41Weights): NativeV41UploadArgs {
    const { hcMult: hc, hiddenSize: D } = this.config;
    const table = this.tablePager?.device === 'cuda' ? this.tablePager.nativeUploadArgs() : w.table.nativeArgs();
    return { ...table, hc, hidden: D, rowsPerToken: this.rowsPerToken, wkv: w.wkvFloat!, qWeight: w.qWeight, kWeight: w.kWeight, deviceIndex: this.deviceIndex };
  }

  /** @internal runs prepared arguments (waiting on their pages, releasing them after). */
  run(p: { args: NativeV41ForwardArgs; commit: () => void; ticket?: PagerTicket }): void {
    try {
      if (p.ticket !== undefined) this.tablePager!.wait(p.ticket);
      native().v41Forward(p.args);
    } finally {
      p.ticket?.release();
    }
    p.commit();
  }

  /** @internal run() on a worker thread (after the weights' upload, when one is pending). */
  async runAsync(p: { args: NativeV41ForwardArgs; commit: () => void; ticket?: PagerTicket; upload?: Promise<NativeV41DeviceHandle> }): Promise<void> {
    try {
      if (p.upload !== undefined) p.args.deviceWeights = await p.upload;
      if (p.ticket !== undefined) await this.tablePager!.waitAsync(p.ticket);
      await native().v41ForwardAsync(p.args);
    } finally {
      p.ticket?.release();
    }
    p.commit();
  }

  /** @internal also used by the multi-layer model (row ids of several layers interleaved). */
  prepare(hiddenStreams: Float32Array, rowIds: Int32Array | BigInt64Array, shape: [number, number], options: V41ForwardOptions, stride?: number, offset = 0, uploadAsync = false) {
    if (options === null || typeof options !== 'object') throw new TypeError(`options must be an object, got ${describe(options)}`);
    const w = this.requireWeights();
    const [batch, seqLen] = requireShape('shape', shape);
    const { hcMult: hc, hiddenSize: D, headDim } = this.config;
    const tokens = batch * seqLen;
    if (!(hiddenStreams instanceof Float32Array)) throw new TypeError(`hiddenStreams must be a Float32Array [B, S, hc, D], got ${describe(hiddenStreams)}`);
    if (hiddenStreams.length !== tokens * hc * D) {
      throw new RangeError(`hiddenStreams has ${hiddenStreams.length} elements but [${batch}, ${seqLen}, ${hc}, ${D}] needs ${tokens * hc * D}`);
    }
    const idStride = stride ?? this.rowsPerToken;
    if (!(rowIds instanceof Int32Array || rowIds instanceof BigInt64Array)) throw new TypeError(`rowIds must be an Int32Array or BigInt64Array, got ${describe(rowIds)}`);
    if (rowIds.length !== tokens * idStride) throw new RangeError(`rowIds has ${rowIds.length} elements but [${batch}, ${seqLen}, ${idStride}] needs ${tokens * idStride}`);
    let tokenMask: Uint8Array | undefined;
    if (options.tokenMask !== undefined) {
      tokenMask = requireTokenMask('options.tokenMask', options.tokenMask, tokens);
    }
    if (options.stageSeconds !== undefined && !(options.stageSeconds instanceof Float64Array && options.stageSeconds.length === 3)) {
      throw new TypeError(`options.stageSeconds must be a Float64Array(3), got ${describe(options.stageSeconds)}`);
    }
    let out = options.out;
    if (out !== undefined && !(out instanceof Float32Array && out.length === tokens * hc * D)) {
      throw new RangeError(`options.out must be a Float32Array of ${tokens * hc * D} elements, got ${describe(out)}`);
    }
    refuseOverlap('options.out', out, 'hiddenStreams', hiddenStreams);
    // The gate kernel (or the device's copy back) writes every element, masked tokens too.
    out ??= newFloat32(tokens * hc * D, { overwritten: true });
    const gates = new Float32Array(tokens * hc);
    let rows: Float32Array | undefined;
    if (options.returnRows instanceof Float32Array) {
      if (options.returnRows.length !== tokens * this.rowsPerToken * headDim) throw new RangeError(`options.returnRows must be a Float32Array of ${tokens * this.rowsPerToken * headDim} elements, got ${describe(options.returnRows)}`);
      rows = options.returnRows;
      refuseOverlap('options.returnRows', rows, 'hiddenStreams', hiddenStreams);
      refuseOverlap('options.returnRows', rows, 'options.out', out);
    } else if (options.returnRows) {
      rows = newFloat32(tokens * this.rowsPerToken * headDim);
    }
    let ticket = options.ticket;
    if (ticket !== undefined) {
      if (!(ticket instanceof PagerTicket)) throw new TypeError(`options.ticket must come from this layer's prefetchRows(), got ${describe(ticket)}`);
      if (ticket.pager !== this.tablePager) {
        throw new Error("options.ticket pinned pages of another pager (another layer's, or one this layer's loadStateDict() or usePager() has since replaced): call prefetchRows() again");
      }
      if (ticket.isReleased) throw new Error('options.ticket was already used or released');
      const mine = layerRowIds(rowIds, idStride, offset, this.rowsPerToken);
      if (mine.length !== ticket.rowIds.length || mine.some((v: number | bigint, i: number) => v !== ticket!.rowIds[i])) {
        throw new RangeError('options.ticket was prefetched for other row ids');
      }
    } else {
      ticket = this.prefetchRows(rowIds, idStride, offset);
    }
    // Paged: the gather reads the cache at the rows the pager translated.
    // Async callers upload the weights on a worker thread (runAsync waits for it).
    const upload = uploadAsync ? this.startUpload() : undefined;
    const args: NativeV41ForwardArgs = {
      ...(ticket !== undefined ? this.tablePager!.nativeCacheArgs() : w.table.nativeArgs()),
      batch,
      seqLen,
      hc,
      hidden: D,
      rowsPerToken: this.rowsPerToken,
      rowIds: ticket !== undefined ? ticket.cacheRows : rowIds,
      rowIdsStride: ticket !== undefined ? this.rowsPerToken : idStride,
      rowIdsOffset: ticket !== undefined ? 0 : offset,
      hiddenStreams,
      wkv: w.wkv,
      qWeight: w.qWeight,
      kWeight: w.kWeight,
      eps: this.config.rmsNormEps,
      tokenMask,
      out,
      gates,
      rows,
      stageSeconds: options.stageSeconds,
      deviceWeights: this.device === 'cuda' && upload === undefined ? this.deviceWeightsNow() : undefined,
      threads: options.threads === undefined ? 0 : requireInteger('options.threads', options.threads, 1, 4096),
    };
    return { args, result: { output: out, gates, rows } as V41ForwardResult, commit: () => (this.gates = gates), ticket, upload };
  }
}

/** The single `layers.{L}.engram.` prefix every key carries, or ''. */
function detectPrefix(keys: string[]): string {
  const prefixes = new Set(keys.map((k) => /^layers\.\d+\.engram\./.exec(k)?.[0] ?? ''));
  return prefixes.size === 1 ? [...prefixes][0] : '';
}
