import { describe, expect, it } from 'vitest';

import { CompressedTokenizer, NgramHashMapping } from '../src/index.js';
import { rng, randInt, randomLookup } from './helpers/random.js';
import { referenceHash } from './helpers/reference-hash.js';

interface Case {
  seed: number;
  maxNgramSize: number;
  nHeadPerNgram: number;
  layerIds: number[];
  engramVocabSize: number[];
  vocab: number;
}

function randomCase(i: number): Case {
  const r = rng(1000 + i);
  const maxNgramSize = randInt(r, 2, 5);
  const regime = i % 3; // small tables (many negative-mix corrections), medium, near 2^31
  const vocabFor = () =>
    regime === 0 ? randInt(r, 2, 60) : regime === 1 ? randInt(r, 1000, 5_000_000) : randInt(r, 2 ** 31 - 120_000, 2 ** 31 - 20_000);
  const layers = randInt(r, 1, 3);
  const layerIds: number[] = [];
  while (layerIds.length < layers) {
    const id = randInt(r, 0, 60);
    if (!layerIds.includes(id)) layerIds.push(id);
  }
  return {
    seed: randInt(r, 0, 1_000_000),
    maxNgramSize,
    nHeadPerNgram: randInt(r, 1, 16),
    layerIds,
    engramVocabSize: Array.from({ length: maxNgramSize - 1 }, vocabFor),
    vocab: randInt(r, 3, 3000),
  };
}

describe('native hashing equals a BigInt transcription of the reference on random configs', () => {
  for (let i = 0; i < 24; i++) {
    const c = randomCase(i);
    it(`case ${i}: n<=${c.maxNgramSize}, ${c.nHeadPerNgram} heads, layers [${c.layerIds}], vocab [${c.engramVocabSize}]`, () => {
      const r = rng(5000 + i);
      const tok = CompressedTokenizer.fromLookup(randomLookup(r, c.vocab));
      const mapping = new NgramHashMapping({ ...c, padId: randInt(r, 0, c.vocab - 1) }, tok);
      const B = randInt(r, 1, 3);
      const T = randInt(r, 1, 40);
      const ids = Array.from({ length: B * T }, () => randInt(r, 0, c.vocab - 1));
      const mask = Array.from({ length: B * T }, () => (r() < 0.2 ? 0 : 1));
      const keep = c.maxNgramSize - 1;
      const history = Array.from({ length: B * keep }, () => (r() < 0.3 ? -1 : randInt(r, 0, tok.compressedVocabSize - 1)));
      const compressed = Array.from(tok.compress(ids));
      const layers = c.layerIds.map((id) => ({
        multipliers: Array.from(mapping.multipliers(id)),
        primes: mapping.primes(id),
        offsets: mapping.headOffsets(id),
      }));

      // The paper demo's per-layer hash.
      for (const [l, id] of c.layerIds.entries()) {
        const got = mapping.hash(ids, [B, T], id, { device: 'cpu' });
        const want = referenceHash(compressed, B, T, c.maxNgramSize, [{ ...layers[l], offsets: undefined }], mapping.compressedPadId);
        expect(Array.from(got, BigInt)).toEqual(want);
      }
      // V4.1-style rows with DEAD positions and a carried history.
      const rows = mapping.hashRows(ids, [B, T], { tokenMask: mask, history, device: 'cpu', output: 'int64' });
      const want = referenceHash(compressed, B, T, c.maxNgramSize, layers, mapping.compressedPadId, mask, history);
      expect(Array.from(rows.rowIds as BigInt64Array)).toEqual(want);
    });
  }
});

describe('blocks of positions that span sequences equal the reference', () => {
  // The CPU loop works on blocks of 128 positions; these shapes put sequence starts,
  // sequences shorter than the look-back and DEAD runs at every place in a block.
  const shapes: Array<[number, number]> = [[5, 97], [2, 300], [300, 1], [130, 2], [3, 128], [1, 257]];
  for (const [i, [B, T]] of shapes.entries()) {
    for (const heads of [8, 16, 5]) {
      it(`[${B}, ${T}], ${heads} heads, with and without a mask`, () => {
        const r = rng(9100 + i * 31 + heads);
        const tok = CompressedTokenizer.fromLookup(randomLookup(r, 2000));
        const mapping = new NgramHashMapping({ maxNgramSize: 3 + (i % 2), nHeadPerNgram: heads, layerIds: [2, 9], engramVocabSize: 700_000 }, tok);
        const keep = mapping.config.maxNgramSize - 1;
        const ids = Int32Array.from({ length: B * T }, () => randInt(r, 0, 1999));
        const compressed = Array.from(tok.compress(ids));
        const layers = mapping.config.layerIds.map((id) => ({
          multipliers: Array.from(mapping.multipliers(id)),
          primes: mapping.primes(id),
          offsets: mapping.headOffsets(id),
        }));
        const plain = mapping.hashRows(ids, [B, T], { device: 'cpu', output: 'int32' });
        expect(Array.from(plain.rowIds, BigInt)).toEqual(referenceHash(compressed, B, T, mapping.config.maxNgramSize, layers, mapping.compressedPadId));
        const mask = Uint8Array.from({ length: B * T }, () => (r() < 0.1 ? 0 : 1));
        const history = Int32Array.from({ length: B * keep }, () => (r() < 0.3 ? -1 : randInt(r, 0, tok.compressedVocabSize - 1)));
        const masked = mapping.hashRows(ids, [B, T], { tokenMask: mask, history, device: 'cpu', output: 'int32' });
        expect(Array.from(masked.rowIds, BigInt)).toEqual(
          referenceHash(compressed, B, T, mapping.config.maxNgramSize, layers, mapping.compressedPadId, Array.from(mask), Array.from(history)),
        );
      });
    }
  }
});

describe('CPU backend determinism', () => {
  it('one thread and all threads give identical ids, chunked or not', () => {
    const r = rng(77);
    const tok = CompressedTokenizer.fromLookup(randomLookup(r, 5000));
    const mapping = new NgramHashMapping({ layerIds: [1, 15, 30] }, tok);
    const B = 4;
    const T = 3001;
    const ids = Int32Array.from({ length: B * T }, () => randInt(r, 0, 4999));
    const mask = Uint8Array.from({ length: B * T }, () => (r() < 0.05 ? 0 : 1));
    const one = mapping.hashRows(ids, [B, T], { tokenMask: mask, threads: 1, device: 'cpu' });
    const all = mapping.hashRows(ids, [B, T], { tokenMask: mask, device: 'cpu' });
    expect(Buffer.compare(Buffer.from(one.rowIds.buffer), Buffer.from(all.rowIds.buffer))).toBe(0);
    expect(Array.from(one.history)).toEqual(Array.from(all.history));
  });
});

describe('CPU loop builds', () => {
  it('the baseline and the auto-selected (AVX-512 where available) loops give identical ids', async () => {
    const { native } = await import('../src/native/index.js');
    const r = rng(4242);
    for (const vocab of [40, 646_400, 2 ** 31 - 50_000]) {
      const tok = CompressedTokenizer.fromLookup(randomLookup(r, 3000));
      const mapping = new NgramHashMapping({ engramVocabSize: vocab, maxNgramSize: 4, nHeadPerNgram: 8, layerIds: [3, 7] }, tok);
      const B = 3;
      const T = 997;
      const ids = Int32Array.from({ length: B * T }, () => randInt(r, 0, 2999));
      const args = (mapping as unknown as { prepare: (...a: unknown[]) => Parameters<ReturnType<typeof native>['ngramHashes']>[0] })
        .prepare(ids, [B, T], [3, 7], { device: 'cpu' }, true, {});
      const kernels = ['baseline', 'auto', ...native().buildInfo().cpuFeatures.filter((f) => f === 'avx2')];
      const outs = kernels.map((cpuKernel) => {
        const out = args.out instanceof BigInt64Array ? new BigInt64Array(args.out.length) : new Int32Array(args.out.length);
        native().ngramHashes({ ...args, out, cpuKernel });
        return out;
      });
      for (const o of outs.slice(1)) expect(Buffer.compare(Buffer.from(outs[0].buffer), Buffer.from(o.buffer))).toBe(0);
    }
  });
});
