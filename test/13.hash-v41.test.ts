import { beforeAll, describe, expect, it } from 'vitest';

import { CompressedTokenizer, DEEPSEEK_V41_NGRAM_HASH_CONFIG, NgramHashMapping } from '../src/index.js';
import { fixture, toNumbers } from './helpers/fixtures.js';

const golden = fixture('v41-hash.json');
const B = golden.input_ids.length;
const T = golden.input_ids[0].length;

// The golden file uses V4.1's geometry with the DeepSeek-V3 compression (98,627 ids).
const config = { ...DEEPSEEK_V41_NGRAM_HASH_CONFIG, compressedVocabSize: undefined };

function expectedRows(from: number, to: number): number[] {
  const out: number[] = [];
  for (let b = 0; b < B; b++) {
    for (let t = from; t < to; t++) for (const layer of golden.layers) out.push(...layer.row_ids[b][t]);
  }
  return out;
}

function slice(rows: number[][], from: number, to: number): number[] {
  return rows.flatMap((r) => r.slice(from, to));
}

describe("DeepSeek-V4.1's hashing", () => {
  let mapping: NgramHashMapping;
  beforeAll(() => {
    mapping = new NgramHashMapping(config, CompressedTokenizer.deepseekV3());
  });

  it('reproduces the released table sizes, primes and offsets', () => {
    for (const layer of golden.layers) {
      expect(mapping.tableRows(layer.layer_id)).toBe(layer.table_rows);
      expect(mapping.primes(layer.layer_id)).toEqual(layer.primes);
      expect(mapping.headOffsets(layer.layer_id)).toEqual(layer.offsets);
      expect(Array.from(mapping.multipliers(layer.layer_id), String)).toEqual(layer.multipliers);
    }
    expect(mapping.tableRows(1)).toBe(384_006_168);
    expect(mapping.tableRows(14)).toBe(384_016_682);
  });

  it('one call equals the reference global row ids', () => {
    const { rowIds } = mapping.hashRows(golden.input_ids.flat(), [B, T], { tokenMask: golden.token_mask.flat(), device: 'cpu' });
    expect(rowIds).toBeInstanceOf(Int32Array);
    expect(toNumbers(rowIds)).toEqual(expectedRows(0, T));
  });

  it('two chunks with the carried history equal one call', () => {
    const s = golden.split_at;
    const first = mapping.hashRows(slice(golden.input_ids, 0, s), [B, s], { tokenMask: slice(golden.token_mask, 0, s), device: 'cpu' });
    const second = mapping.hashRows(slice(golden.input_ids, s, T), [B, T - s], {
      tokenMask: slice(golden.token_mask, s, T),
      history: first.history,
      device: 'cpu',
    });
    expect(toNumbers(first.rowIds)).toEqual(expectedRows(0, s));
    expect(toNumbers(second.rowIds)).toEqual(expectedRows(s, T));
  });

  it('one-token decode steps equal one call', async () => {
    let history: Int32Array | undefined;
    const got: number[] = [];
    const perStep: number[][] = Array.from({ length: T }, () => []);
    for (let t = 0; t < T; t++) {
      const r = await mapping.hashRowsAsync(slice(golden.input_ids, t, t + 1), [B, 1], {
        tokenMask: slice(golden.token_mask, t, t + 1),
        history,
        device: 'cpu',
      });
      history = r.history;
      perStep[t] = Array.from(r.rowIds as Int32Array);
    }
    const cols = mapping.headsPerLayer * golden.layers.length;
    for (let b = 0; b < B; b++) for (let t = 0; t < T; t++) got.push(...perStep[t].slice(b * cols, (b + 1) * cols));
    expect(got).toEqual(expectedRows(0, T));
  });

  it('a DEAD position hashes the pad id for every shift', () => {
    const { rowIds } = mapping.hashRows([5, 6, 7], [1, 3], { tokenMask: [1, 0, 1], device: 'cpu' });
    const pads = mapping.hashRows([2, 2, 2], [1, 3], { tokenMask: [0, 0, 0], device: 'cpu' }).rowIds;
    const cols = mapping.headsPerLayer * 2;
    expect(toNumbers(rowIds.slice(cols, 2 * cols))).toEqual(toNumbers(pads.slice(0, cols)));
  });

  it('int64 output carries the same ids', () => {
    const r = mapping.hashRows(golden.input_ids.flat(), [B, T], { tokenMask: golden.token_mask.flat(), output: 'int64', device: 'cpu' });
    expect(r.rowIds).toBeInstanceOf(BigInt64Array);
    expect(Array.from(r.rowIds, Number)).toEqual(expectedRows(0, T));
  });

  it('the V4.1 preset refuses a tokenizer that does not compress to 99,092 ids', () => {
    expect(() => new NgramHashMapping(DEEPSEEK_V41_NGRAM_HASH_CONFIG, CompressedTokenizer.deepseekV3())).toThrow(
      /compresses to 98627 ids but config.compressedVocabSize is 99092/,
    );
  });
});
