import { beforeAll, describe, expect, it } from 'vitest';

import { CompressedTokenizer, NgramHashMapping, devices } from '../src/index.js';

describe('bad input gets a clear error and no output', () => {
  let tok: CompressedTokenizer;
  let mapping: NgramHashMapping;
  beforeAll(() => {
    tok = CompressedTokenizer.fromLookup([0, 1, 2, 3, 1, 0, 4, 5]);
    mapping = new NgramHashMapping({}, tok);
  });

  it('config errors name the parameter and value', () => {
    expect(() => new NgramHashMapping({ maxNgramSize: 1 }, tok)).toThrow(/config\.maxNgramSize must be in \[2, 8\], got 1/);
    expect(() => new NgramHashMapping({ maxNgramSize: 9 }, tok)).toThrow(RangeError);
    expect(() => new NgramHashMapping({ nHeadPerNgram: 0 }, tok)).toThrow(/config\.nHeadPerNgram must be in \[1, 4096\], got 0/);
    expect(() => new NgramHashMapping({ engramVocabSize: [646400] }, tok)).toThrow(/one entry per n-gram order \(2 for maxNgramSize 3\), got 1/);
    expect(() => new NgramHashMapping({ engramVocabSize: [646400, 1] }, tok)).toThrow(/config\.engramVocabSize\[1\] must be in \[2, /);
    expect(() => new NgramHashMapping({ engramVocabSize: 2 ** 31 }, tok)).toThrow(RangeError);
    expect(() => new NgramHashMapping({ engramVocabSize: [2 ** 31 - 1, 10] }, tok)).toThrow(/above 2\^31-1/);
    expect(() => new NgramHashMapping({ engramVocabSize: 'x' as unknown as number }, tok)).toThrow(TypeError);
    expect(() => new NgramHashMapping({ layerIds: [] }, tok)).toThrow(/at least one layer/);
    expect(() => new NgramHashMapping({ layerIds: [1, 1] }, tok)).toThrow(/must not repeat/);
    expect(() => new NgramHashMapping({ padId: 8 }, tok)).toThrow(/config\.padId = 8 is outside/);
    expect(() => new NgramHashMapping({ seed: -1 }, tok)).toThrow(RangeError);
    expect(() => new NgramHashMapping({ seed: 0.5 }, tok)).toThrow(TypeError);
    expect(() => new NgramHashMapping({}, {} as CompressedTokenizer)).toThrow(/tokenizer must be a CompressedTokenizer/);
  });

  it('an unknown layer id', () => {
    expect(() => mapping.hash([1, 2], [1, 2], 3)).toThrow(/layerId must be one of \[1, 15\], got 3/);
    expect(() => mapping.primes(2)).toThrow(RangeError);
    expect(() => mapping.tableRows('1' as unknown as number)).toThrow(RangeError);
  });

  it('ids out of range, negative, non-integer', () => {
    expect(() => mapping.hash([1, 8], [1, 2], 1, { device: 'cpu' })).toThrow(/inputIds\[1\] = 8 is outside the tokenizer's vocabulary \[0, 8\)/);
    expect(() => mapping.hash([-1, 0], [1, 2], 1, { device: 'cpu' })).toThrow(RangeError);
    expect(() => mapping.hash([0.5, 0], [1, 2], 1, { device: 'cpu' })).toThrow(/inputIds\[0\] must be an integer token id, got 0.5/);
    expect(() => mapping.hash([NaN, 0], [1, 2], 1, { device: 'cpu' })).toThrow(TypeError);
    expect(() => mapping.hash(new BigInt64Array(2) as unknown as number[], [1, 2], 1)).toThrow(TypeError);
    expect(() => mapping.hashRows(Int32Array.of(0, 99), [1, 2], { device: 'cpu' })).toThrow(/inputIds\[1\] = 99/);
  });

  it('a length that does not match the shape, and bad shapes', () => {
    expect(() => mapping.hash([1, 2, 3], [1, 2], 1)).toThrow(/inputIds has 3 elements but the shape needs 2/);
    expect(() => mapping.hash([1, 2], [2] as unknown as [number, number], 1)).toThrow(/shape must be \[batch, seqLen\]/);
    expect(() => mapping.hash([1, 2], [-1, -2], 1)).toThrow(RangeError);
    expect(() => mapping.hash([1, 2], [1.5, 2], 1)).toThrow(TypeError);
  });

  it('mask and history of the wrong size or values', () => {
    expect(() => mapping.hashRows([1, 2], [1, 2], { tokenMask: [1], device: 'cpu' })).toThrow(/tokenMask has 1 elements but the shape needs 2/);
    expect(() => mapping.hashRows([1, 2], [1, 2], { tokenMask: [1, 2], device: 'cpu' })).toThrow(/tokenMask\[1\] must be a boolean or 0\/1, got 2/);
    expect(() => mapping.hashRows([1, 2], [1, 2], { history: [1], device: 'cpu' })).toThrow(/history has 1 elements/);
    expect(() => mapping.hashRows([1, 2], [1, 2], { history: [1, 6], device: 'cpu' })).toThrow(/history\[1\] = 6 is outside \[-1, 6\)/);
    expect(() => mapping.hashRows([1, 2], [1, 2], { history: [-2, 0], device: 'cpu' })).toThrow(RangeError);
    expect(() => mapping.hashRows([1, 2], [1, 2], { output: 'int16' as 'int32', device: 'cpu' })).toThrow(/options\.output/);
  });

  it('options.out of the wrong type or length', () => {
    expect(() => mapping.hash([1, 2], [1, 2], 1, { device: 'cpu', out: new Int32Array(31) })).toThrow(/options\.out has 31 elements but the result needs 32/);
    expect(() => mapping.hash([1, 2], [1, 2], 1, { device: 'cpu', out: new BigInt64Array(32) })).toThrow(/options\.out must be a Int32Array/);
    const out = new Int32Array(32);
    expect(mapping.hash([1, 2], [1, 2], 1, { device: 'cpu', out })).toBe(out);
  });

  it('options: device, threads', () => {
    expect(() => mapping.hash([1, 2], [1, 2], 1, { device: 'gpu' as 'cuda' })).toThrow(/options\.device must be 'cpu', 'cuda' or 'auto', got "gpu"/);
    expect(() => mapping.hash([1, 2], [1, 2], 1, { threads: 0, device: 'cpu' })).toThrow(/options\.threads/);
  });

  it("asking for 'cuda' without a device is a clear error", () => {
    if (devices().length > 0) return; // only meaningful where no GPU is visible
    expect(() => mapping.hash([1, 2], [1, 2], 1, { device: 'cuda' })).toThrow(/device 'cuda' was requested but no CUDA device is available/);
  });

  it('an empty batch or a zero-length sequence gives an empty result', () => {
    expect(mapping.hash([], [0, 5], 1).length).toBe(0);
    expect(mapping.hash([], [3, 0], 1).length).toBe(0);
    const r = mapping.hashRows([], [2, 0], { device: 'cpu' });
    expect(r.rowIds.length).toBe(0);
    expect(Array.from(r.history)).toEqual([-1, -1, -1, -1]);
    const carried = mapping.hashRows([], [1, 0], { history: [3, 4], device: 'cpu' });
    expect(Array.from(carried.history)).toEqual([3, 4]);
  });
});

describe('the native boundary checks again', () => {
  it('refuses mismatched buffers without touching memory', async () => {
    const { native } = await import('../src/native/index.js');
    const base = {
      batch: 1, seqLen: 4, layers: 1, maxNgram: 3, headsPerNgram: 1, padId: 0, compressedVocabSize: 3,
      ids: Int32Array.of(0, 1, 2, 1), lookup: Int32Array.of(0, 1, 2),
      multipliers: BigInt64Array.of(3n, 5n, 7n), primes: BigUint64Array.of(11n, 13n),
      out: new Int32Array(8), device: 'cpu' as const, deviceIndex: 0, threads: 0,
    };
    expect(() => native().ngramHashes(base)).not.toThrow();
    expect(() => native().ngramHashes({ ...base, out: new Int32Array(7) })).toThrow(/out has 7 elements, expected 8/);
    expect(() => native().ngramHashes({ ...base, ids: Int32Array.of(0, 1, 3, 1) })).toThrow(/inputIds\[2\] = 3 is outside the tokenizer's vocabulary \[0, 3\)/);
    expect(() => native().ngramHashes({ ...base, ids: new Uint32Array(4) as unknown as Int32Array })).toThrow(TypeError);
    expect(() => native().ngramHashes({ ...base, maxNgram: 9 })).toThrow(RangeError);
    await expect(native().ngramHashesAsync({ ...base, history: Int32Array.of(0, 7) })).rejects.toThrow(RangeError);
  });
});

describe('native handles are type-tagged', () => {
  it('a handle of one kind passed where another is expected is a TypeError naming both', async () => {
    const { native } = await import('../src/native/index.js');
    const fs = await import('node:fs');
    const os = await import('node:os');
    const path = await import('node:path');
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'engram-handles-')), 'bytes.bin');
    fs.writeFileSync(file, new Uint8Array(64));
    const mapped = native().mapFileHandle(file);
    const linear = native().packLinear({ weight: new Float32Array(4), n: 2, k: 2 });
    const pagerFn = native().pagerStats as unknown as (h: unknown) => unknown;
    expect(() => pagerFn(mapped)).toThrow(TypeError);
    expect(() => pagerFn(mapped)).toThrow(/must be a pager handle \(pagerCreate\), got a mapped file handle/);
    expect(() => pagerFn(linear)).toThrow(/got a packed projection handle/);
    expect(() => pagerFn(7)).toThrow(/got a number/);
    const linearFn = native().linear as unknown as (args: object) => void;
    expect(() => linearFn({ weight: mapped, x: new Float32Array(2), m: 1, out: new Float32Array(2), threads: 0 })).toThrow(
      /weight must be a packed projection handle \(packLinear\), got a mapped file handle/,
    );
    // the right handles still work
    const out = new Float32Array(2);
    native().linear({ weight: linear, x: Float32Array.of(1, 1), m: 1, out, threads: 0 });
    expect(Array.from(out)).toEqual([0, 0]);
    expect(native().mappedFileView(mapped, 0, 8).byteLength).toBe(8);
    fs.rmSync(path.dirname(file), { recursive: true, force: true });
  });
});

describe('floats and named options', () => {
  it('MoE configs and routing options with non-finite or non-number floats are refused', async () => {
    const { MoE, moeRoute } = await import('../src/index.js');
    const base = { dim: 4, numExperts: 4, ffnDim: 2, topk: 2 };
    expect(() => new MoE({ ...base, gateTemp: NaN })).toThrow(/config\.gateTemp must be a finite number > 0, got NaN/);
    expect(() => new MoE({ ...base, routeScale: 'abc' as unknown as number })).toThrow(TypeError);
    expect(() => new MoE({ ...base, normEps: -1 })).toThrow(/config\.normEps must be a finite number >= 0/);
    expect(() => new MoE({ ...base, swigluLimit: Infinity })).toThrow(RangeError);
    expect(() => new MoE({ ...base, scoreFunc: 'constructor' as never })).toThrow(/config\.scoreFunc must be 'softmax', 'sigmoid' or 'sqrtsoftplus', got "constructor"/);
    const x = new Float32Array(8), gate = new Float32Array(16);
    expect(() => moeRoute(x, gate, [2, 4], { topk: 2, gateTemp: NaN })).toThrow(/options\.gateTemp must be a finite number > 0/);
    expect(() => moeRoute(x, gate, [2, 4], { topk: 2, routeScale: -Infinity })).toThrow(RangeError);
    expect(() => moeRoute(x, gate, [2, 4], { topk: 2, scoreFunc: 'toString' as never })).toThrow(/options\.scoreFunc must be/);
    expect(moeRoute(x, gate, [2, 4], { topk: 2 }).indices.length).toBe(4);
  });

  it('the addon checks floats again where it reads them', async () => {
    const { native } = await import('../src/native/index.js');
    const gate = native().packLinear({ weight: new Float32Array(16), n: 4, k: 4 });
    const args = {
      gate, x: new Float32Array(8), logits: new Float32Array(8), tokens: 2, experts: 4, topk: 2, groups: 1, topkGroups: 1,
      scoreFunc: 0, gateTemp: 1, routeScale: 1, normEps: 0, indices: new Int32Array(4), weights: new Float32Array(4), threads: 0,
    };
    expect(() => native().moeRoute(args)).not.toThrow();
    expect(() => native().moeRoute({ ...args, gateTemp: NaN })).toThrow(/gateTemp must be a finite number/);
    expect(() => native().moeRoute({ ...args, routeScale: 'abc' as unknown as number })).toThrow(/routeScale must be a number/);
    expect(() => native().moeRoute({ ...args, normEps: Infinity })).toThrow(RangeError);
  });

  it('a pager eviction named after an inherited property is refused by name', async () => {
    const { EngramTable, TablePager } = await import('../src/index.js');
    const table = EngramTable.allocate(64, 8, 'f32');
    expect(() => TablePager.create(table, { cacheBytes: 8 * 4 * 16, pageRows: 4, eviction: 'toString' as never })).toThrow(
      /options\.eviction must be 'lru', 'lfu' or 'direct', got "toString"/,
    );
  });
});

describe('hash specs are checked as the constructor would', () => {
  it('fromSpec refuses multipliers the reference cannot draw and moduli that are not prime', async () => {
    const { CompressedTokenizer: Tok, NgramHashMapping: Mapping } = await import('../src/index.js');
    const tok = Tok.fromLookup([0, 1, 2, 3, 4, 5, 6, 7]);
    const mapping = new Mapping({ engramVocabSize: 1000, maxNgramSize: 3, nHeadPerNgram: 2, layerIds: [1] }, tok);
    const spec = mapping.toSpec();
    const again = Mapping.fromSpec(JSON.parse(JSON.stringify(spec)), tok);
    expect(again.primes(1)).toEqual(mapping.primes(1));
    const negative = JSON.parse(JSON.stringify(spec));
    negative.layers[0].multipliers[1] = '-7';
    expect(() => Mapping.fromSpec(negative, tok)).toThrow(/spec.layers\[0\].multipliers\[1\] must be a positive odd int64 \(as the reference draws them\), got -7n/);
    const even = JSON.parse(JSON.stringify(spec));
    even.layers[0].multipliers[0] = '8';
    expect(() => Mapping.fromSpec(even, tok)).toThrow(/must be a positive odd int64/);
    const composite = JSON.parse(JSON.stringify(spec));
    composite.layers[0].primes[0][1] = 1001; // 7 x 11 x 13
    expect(() => Mapping.fromSpec(composite, tok)).toThrow(/spec.layers\[0\].primes\[0\]\[1\] must be a prime \(the reference's head moduli are\), got 1001/);
  });
});

describe('token masks hold 0/1 or booleans', () => {
  it('a Uint8Array with other values, or non-numbers, is refused, in hashing and in the V4.1 layer', async () => {
    const { CompressedTokenizer: Tok, DeepseekV41Engram, NgramHashMapping: Mapping, DEEPSEEK_V41_NGRAM_HASH_CONFIG } = await import('../src/index.js');
    const mapping = new Mapping({ ...DEEPSEEK_V41_NGRAM_HASH_CONFIG, engramVocabSize: 1009, compressedVocabSize: undefined }, Tok.fromLookup([0, 1, 2, 3, 4, 5, 6, 7]));
    expect(() => mapping.hashRows([1, 2, 3], [1, 3], { tokenMask: Uint8Array.of(1, 2, 1), device: 'cpu' })).toThrow(/options.tokenMask\[1\] must be 0 or 1, got 2/);
    expect(() => mapping.hashRows([1, 2, 3], [1, 3], { tokenMask: Uint8Array.of(255, 1, 1), device: 'cpu' })).toThrow(/must be 0 or 1, got 255/);
    expect(() => mapping.hashRows([1, 2, 3], [1, 3], { tokenMask: ['x', 'no', 0] as never, device: 'cpu' })).toThrow(/tokenMask\[0\] must be a boolean or 0\/1, got "x"/);
    expect(mapping.hashRows([1, 2, 3], [1, 3], { tokenMask: [true, false, 1], device: 'cpu' }).rowIds.length).toBeGreaterThan(0);
    const layer = new DeepseekV41Engram({ hiddenSize: 32, hcMult: 1, maxNgramSize: 2, nHeads: 1, headDim: 32, numEmbeddings: 8 }, { device: 'cpu' });
    const f32 = (shape: number[]) => ({ dtype: 'F32' as const, shape, data: new Float32Array(shape[0] * shape[1]).fill(0.5) });
    layer.loadStateDict({ 'embed.weight': f32([8, 32]), 'wkv.weight': f32([64, 32]), q_weight: f32([1, 32]), k_weight: f32([1, 32]) });
    const streams = new Float32Array(2 * 32);
    expect(layer.forwardRows(streams, Int32Array.of(0, 1), [1, 2], { tokenMask: Uint8Array.of(1, 0) }).output.length).toBe(64);
    expect(() => layer.forwardRows(streams, Int32Array.of(0, 1), [1, 2], { tokenMask: Uint8Array.of(1, 7) })).toThrow(/options.tokenMask\[1\] must be 0 or 1, got 7/);
    expect(() => layer.forwardRows(streams, Int32Array.of(0, 1), [1, 2], { tokenMask: [1, 'no'] as never })).toThrow(/options.tokenMask\[1\] must be a boolean or 0\/1, got "no"/);
  });
});

describe('outputs that alias inputs', () => {
  it('an output overlapping an input is refused (hashing, the paper layer, MoE); views of one buffer that do not overlap are fine', async () => {
    const { CompressedTokenizer: Tok, Engram, MoE, NgramHashMapping: Mapping } = await import('../src/index.js');
    const mapping = new Mapping({ engramVocabSize: 1009, maxNgramSize: 3, nHeadPerNgram: 2, layerIds: [1] }, Tok.fromLookup([0, 1, 2, 3, 4, 5, 6, 7]));
    const shared = new Int32Array(64);
    const ids = shared.subarray(0, 4);
    ids.set([1, 2, 3, 4]);
    expect(() => mapping.hashRows(ids, [1, 4], { output: 'int32', out: shared.subarray(0, 16) })).toThrow(/options.out overlaps inputIds \(bytes \[0, 64\) and \[0, 16\) of one buffer\)/);
    const fine = mapping.hashRows(ids, [1, 4], { output: 'int32', out: shared.subarray(16, 32) }).rowIds;
    expect(Array.from(fine as Int32Array)).toEqual(Array.from(mapping.hashRows(Int32Array.of(1, 2, 3, 4), [1, 4], { output: 'int32' }).rowIds as Int32Array));

    const tokenizer = Tok.deepseekV3();
    const layer = new Engram({ layerId: 1, layerIds: [1], hiddenSize: 32, hcMult: 1, nEmbedPerNgram: 64, nHeadPerNgram: 2, maxNgramSize: 3, engramVocabSize: [3001, 3001], kernelSize: 2 }, { tokenizer, seed: 1 });
    const big = new Float32Array(4 * 32 + 4 * 128);
    const hidden = big.subarray(0, 4 * 32);
    expect(() => layer.forward(hidden, [1, 2, 3, 4], [1, 4], { returnEmbeddings: big.subarray(64, 64 + 4 * 128) })).toThrow(/options.returnEmbeddings overlaps hiddenStates/);
    expect(layer.forward(hidden, [1, 2, 3, 4], [1, 4], { returnEmbeddings: big.subarray(128, 128 + 4 * 128) }).embeddings!.length).toBe(512);

    const moe = new MoE({ dim: 4, numExperts: 2, ffnDim: 2, topk: 1 }, { device: 'cpu' });
    const f = (shape: number[]) => ({ dtype: 'F32' as const, shape, data: new Float32Array(shape[0] * shape[1]).fill(0.1) });
    moe.loadStateDict({ 'gate.weight': f([2, 4]), ...Object.fromEntries([0, 1].flatMap((e) => [[`experts.${e}.w1.weight`, f([2, 4])], [`experts.${e}.w3.weight`, f([2, 4])], [`experts.${e}.w2.weight`, f([4, 2])]])) });
    const xs = new Float32Array(16);
    expect(() => moe.forward(xs.subarray(0, 8), [2, 4], { out: xs.subarray(4, 12) })).toThrow(/options.out overlaps x/);
  });
});

describe('weights must be finite; MoE state dicts are strict', () => {
  it('a NaN or infinity in a weight is refused with its tensor and index, and the old weights stay', async () => {
    const { DeepseekV41Engram, MoE } = await import('../src/index.js');
    const f32 = (shape: number[], fill = 0.5) => ({ dtype: 'F32' as const, shape, data: new Float32Array(shape[0] * shape[1]).fill(fill) });
    const layer = new DeepseekV41Engram({ hiddenSize: 32, hcMult: 1, maxNgramSize: 2, nHeads: 1, headDim: 32, numEmbeddings: 8 }, { device: 'cpu' });
    const dict = { 'embed.weight': f32([8, 32]), 'wkv.weight': f32([64, 32]), q_weight: f32([1, 32]), k_weight: f32([1, 32]) };
    layer.loadStateDict(dict);
    const streams = new Float32Array(2 * 32).fill(0.25);
    const before = layer.forwardRows(streams, Int32Array.of(0, 1), [1, 2]).output;
    const badQ = f32([1, 32]);
    badQ.data[5] = NaN;
    expect(() => layer.loadStateDict({ ...dict, q_weight: badQ })).toThrow(/tensor 'q_weight' holds NaN at index 5: weights must be finite/);
    const badWkv = f32([64, 32]);
    badWkv.data[70] = Infinity;
    expect(() => layer.loadStateDict({ ...dict, 'wkv.weight': badWkv })).toThrow(/tensor 'wkv.weight' holds Infinity at index 70/);
    // e4m3 has NaN codes (S.1111.111): a checkpoint holding one is refused, not decoded to NaN.
    const codes = new Uint8Array(64 * 32).fill(0x38); // 1.0
    codes[9] = 0xff;
    const fp8 = { 'wkv.weight': { dtype: 'F8_E4M3' as const, shape: [64, 32], data: codes }, 'wkv.scale': { dtype: 'F8_E8M0' as const, shape: [2, 1], data: new Uint8Array(2).fill(127) } };
    expect(() => layer.loadStateDict({ ...dict, ...fp8 })).toThrow(/tensor 'wkv.weight' holds the e4m3 NaN code 0xff at index 9/);
    codes[9] = 0x38;
    fp8['wkv.scale'].data[1] = 0xff;
    expect(() => layer.loadStateDict({ ...dict, ...fp8 })).toThrow(/tensor 'wkv.scale' holds the e8m0 NaN code 0xff at index 1/);
    fp8['wkv.scale'].data[1] = 127;
    layer.loadStateDict({ ...dict, ...fp8 }); // the same tensor without the NaN code loads
    layer.loadStateDict(dict);
    expect(Array.from(layer.forwardRows(streams, Int32Array.of(0, 1), [1, 2]).output)).toEqual(Array.from(before));

    const moe = new MoE({ dim: 4, numExperts: 2, ffnDim: 2, topk: 1 }, { device: 'cpu' });
    const f = (shape: number[]) => f32(shape, 0.1);
    const moeDict: Record<string, ReturnType<typeof f>> = { 'gate.weight': f([2, 4]), ...Object.fromEntries([0, 1].flatMap((e) => [[`experts.${e}.w1.weight`, f([2, 4])], [`experts.${e}.w3.weight`, f([2, 4])], [`experts.${e}.w2.weight`, f([4, 2])]])) };
    moe.loadStateDict(moeDict);
    const badGate = f([2, 4]);
    badGate.data[3] = -Infinity;
    expect(() => moe.loadStateDict({ ...moeDict, 'gate.weight': badGate })).toThrow(/tensor 'gate.weight' holds -Infinity at index 3/);
    // An expert past numExperts (a checkpoint for a larger block) is an error unless strict is off.
    const extra = { ...moeDict, 'experts.2.w1.weight': f([2, 4]) };
    expect(() => moe.loadStateDict(extra)).toThrow(/unexpected tensor 'experts.2.w1.weight' \(not part of this block: 2 experts\); pass \{ strict: false \}/);
    moe.loadStateDict(extra, { strict: false });
    const prefixed = Object.fromEntries(Object.entries(extra).map(([k, v]) => [`layers.3.ffn.${k}`, v]));
    expect(() => moe.loadStateDict({ ...prefixed, 'layers.3.attn.wq.weight': f([2, 4]) }, { prefix: 'layers.3.ffn.' })).toThrow(/unexpected tensor 'layers.3.ffn.experts.2.w1.weight'/);
    delete prefixed['layers.3.ffn.experts.2.w1.weight'];
    moe.loadStateDict({ ...prefixed, 'layers.3.attn.wq.weight': f([2, 4]) }, { prefix: 'layers.3.ffn.' }); // other blocks' tensors are not this block's business
  });
});

describe('SharedArrayBuffer-backed arrays', () => {
  it('are accepted as inputs and outputs, with the bits of ordinary arrays (hashing, the paper layer, MoE, the pager)', async () => {
    const { CompressedTokenizer: Tok, Engram, EngramTable, MoE, NgramHashMapping: Mapping, TablePager } = await import('../src/index.js');
    const shared = <T extends Int32Array | Float32Array>(make: (b: SharedArrayBuffer) => T, values: ArrayLike<number>): T => {
      const a = make(new SharedArrayBuffer(values.length * 4));
      a.set(values);
      return a;
    };
    const bits = (a: ArrayLike<number> | BigInt64Array) => Array.from(a as ArrayLike<number>, (v) => String(v));
    const mapping = new Mapping({ engramVocabSize: 1009, maxNgramSize: 3, nHeadPerNgram: 2, layerIds: [1] }, Tok.fromLookup([0, 1, 2, 3, 4, 5, 6, 7]));
    const ids = [1, 2, 3, 4, 5, 6];
    const plain = mapping.hashRows(Int32Array.from(ids), [2, 3], { output: 'int32' }).rowIds;
    const out = shared((b) => new Int32Array(b), new Int32Array(plain.length));
    mapping.hashRows(shared((b) => new Int32Array(b), ids), [2, 3], { output: 'int32', out });
    expect(bits(out)).toEqual(bits(plain));
    expect(bits(await mapping.hashRowsAsync(shared((b) => new Int32Array(b), ids), [2, 3], { output: 'int32' }).then((r) => r.rowIds))).toEqual(bits(plain));

    const layer = new Engram({ layerId: 1, layerIds: [1], hiddenSize: 32, hcMult: 1, nEmbedPerNgram: 64, nHeadPerNgram: 2, maxNgramSize: 3, engramVocabSize: [3001, 3001], kernelSize: 2 }, { tokenizer: Tok.deepseekV3(), seed: 1 });
    const hidden = Float32Array.from({ length: 4 * 32 }, (_, i) => Math.sin(i));
    const expected = layer.forward(hidden, [1, 2, 3, 4], [1, 4]).output;
    const sharedOut = shared((b) => new Float32Array(b), new Float32Array(expected.length));
    layer.forward(shared((b) => new Float32Array(b), hidden), [1, 2, 3, 4], [1, 4], { out: sharedOut });
    expect(bits(sharedOut)).toEqual(bits(expected));

    const moe = new MoE({ dim: 4, numExperts: 2, ffnDim: 2, topk: 1 }, { device: 'cpu' });
    const f = (shape: number[]) => ({ dtype: 'F32' as const, shape, data: Float32Array.from({ length: shape[0] * shape[1] }, (_, i) => 0.1 * ((i % 5) - 2)) });
    moe.loadStateDict({ 'gate.weight': f([2, 4]), ...Object.fromEntries([0, 1].flatMap((e) => [[`experts.${e}.w1.weight`, f([2, 4])], [`experts.${e}.w3.weight`, f([2, 4])], [`experts.${e}.w2.weight`, f([4, 2])]])) });
    const x = Float32Array.of(0.5, -1, 0.25, 2, 1, 0, -0.5, 0.75);
    expect(bits(moe.forward(shared((b) => new Float32Array(b), x), [2, 4]).output)).toEqual(bits(moe.forward(x, [2, 4]).output));

    const pager = TablePager.create(EngramTable.random(100, 32, 'f32', { seed: 2 }), { cacheBytes: 2 ** 16, pageRows: 4 });
    const rows = shared((b) => new Int32Array(b), [3, 50, 99]);
    const ticket = pager.prefetch(rows);
    expect(bits(pager.gather(rows, { ticket }))).toEqual(bits(EngramTable.random(100, 32, 'f32', { seed: 2 }).gather(Int32Array.of(3, 50, 99))));
    expect(pager.stats().ticketsInFlight).toBe(0); // gather gave the ticket back
  });
});

describe('prefetch tickets outliving their pager', () => {
  it("a V4.1 ticket pinned in a pager that loadStateDict() dropped is refused with what to do; a foreign object is a TypeError", async () => {
    const { DeepseekV41Engram } = await import('../src/index.js');
    const f32 = (shape: number[]) => ({ dtype: 'F32' as const, shape, data: Float32Array.from({ length: shape[0] * shape[1] }, (_, i) => ((i % 7) - 3) / 8) });
    const layer = new DeepseekV41Engram({ hiddenSize: 32, hcMult: 1, maxNgramSize: 2, nHeads: 1, headDim: 32, numEmbeddings: 64 }, { device: 'cpu' });
    const dict = { 'embed.weight': f32([64, 32]), 'wkv.weight': f32([64, 32]), q_weight: f32([1, 32]), k_weight: f32([1, 32]) };
    layer.loadStateDict(dict);
    layer.usePager({ tier: 'host', cacheBytes: 2 ** 16, pageRows: 4 });
    const streams = new Float32Array(2 * 32).fill(0.25);
    const rowIds = Int32Array.of(3, 40);
    const expected = layer.forwardRows(streams, rowIds, [1, 2], { ticket: layer.prefetchRows(rowIds) }).output;
    const stale = layer.prefetchRows(rowIds)!;
    layer.loadStateDict(dict);
    expect(() => layer.forwardRows(streams, rowIds, [1, 2], { ticket: stale })).toThrow(/options.ticket pinned pages of another pager .*call prefetchRows\(\) again/);
    expect(() => layer.forwardRows(streams, rowIds, [1, 2], { ticket: {} as never })).toThrow(TypeError);
    expect(Array.from(layer.forwardRows(streams, rowIds, [1, 2]).output)).toEqual(Array.from(expected));
  });
});
