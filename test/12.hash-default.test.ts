import { beforeAll, describe, expect, it } from 'vitest';

import { CompressedTokenizer, DEFAULT_NGRAM_HASH_CONFIG, NgramHashMapping } from '../src/index.js';
import { fixture } from './helpers/fixtures.js';

const golden = fixture('hash-default.json');

describe('NgramHashMapping: the reference default configuration', () => {
  let tok: CompressedTokenizer;
  let mapping: NgramHashMapping;
  beforeAll(() => {
    tok = CompressedTokenizer.deepseekV3();
    mapping = new NgramHashMapping({}, tok);
  });

  it('uses the reference defaults', () => {
    expect(mapping.config).toEqual({
      engramVocabSize: golden.config.engram_vocab_size,
      maxNgramSize: golden.config.max_ngram_size,
      nHeadPerNgram: golden.config.n_head_per_ngram,
      layerIds: golden.config.layer_ids,
      padId: golden.config.pad_id,
      seed: golden.config.seed,
    });
    expect(mapping.config).toEqual(DEFAULT_NGRAM_HASH_CONFIG);
    expect(mapping.compressedVocabSize).toBe(golden.compressed_vocab_size);
    expect(mapping.compressedPadId).toBe(golden.compressed_pad_id);
  });

  it('compresses the inputs like the reference', () => {
    const got = tok.compress(golden.input_ids.flat());
    expect(Array.from(got)).toEqual(golden.compressed_ids.flat());
  });

  for (const layer of golden.layers) {
    it(`layer ${layer.layer_id}: multipliers and primes`, () => {
      expect(Array.from(mapping.multipliers(layer.layer_id), String)).toEqual(layer.multipliers);
      expect(mapping.primes(layer.layer_id)).toEqual(layer.primes);
      const sum = layer.primes.flat().reduce((a: number, b: number) => a + b, 0);
      expect(mapping.tableRows(layer.layer_id)).toBe(sum);
    });

    it(`layer ${layer.layer_id}: hashes equal the reference exactly (CPU)`, () => {
      const out = mapping.hash(golden.input_ids.flat(), [3, 24], layer.layer_id, { device: 'cpu' });
      expect(out).toBeInstanceOf(Int32Array);
      expect(Array.from(out)).toEqual(layer.hashes.flat(2));
    });

    it(`layer ${layer.layer_id}: hashAsync gives the same ids`, async () => {
      const out = await mapping.hashAsync(Int32Array.from(golden.input_ids.flat()), [3, 24], layer.layer_id, { device: 'cpu' });
      expect(Array.from(out)).toEqual(layer.hashes.flat(2));
    });
  }

  it('hashRows adds each head offset to the demo hashes', () => {
    const { rowIds } = mapping.hashRows(golden.input_ids.flat(), [3, 24], { device: 'cpu' });
    expect(rowIds).toBeInstanceOf(Int32Array);
    const cols = mapping.headsPerLayer;
    const layers = golden.layers.length;
    golden.layers.forEach((layer: any, l: number) => {
      const offsets = mapping.headOffsets(layer.layer_id);
      for (let b = 0; b < 3; b++) {
        for (let t = 0; t < 24; t++) {
          for (let c = 0; c < cols; c++) {
            const got = rowIds[((b * 24 + t) * layers + l) * cols + c];
            expect(got).toBe(layer.hashes[b][t][c] + offsets[c]);
          }
        }
      }
    });
  });
});
