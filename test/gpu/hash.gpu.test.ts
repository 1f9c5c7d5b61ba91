// GPU suite: runs where a CUDA device is visible, and says plainly when it is skipped.
import { beforeAll, describe, expect, it } from 'vitest';

import { CompressedTokenizer, NgramHashMapping } from '../../src/index.js';
import { gpuVisible } from '../helpers/gpu.js';
import { fixture, toNumbers } from '../helpers/fixtures.js';
import { rng, randInt, randomLookup } from '../helpers/random.js';

const visible = gpuVisible('hashing');

describe.skipIf(!visible)('CUDA hashing', () => {
  let tok: CompressedTokenizer;
  beforeAll(() => {
    tok = CompressedTokenizer.deepseekV3();
  });

  it('reference default hashes on the GPU', () => {
    const golden = fixture('hash-default.json');
    const mapping = new NgramHashMapping({}, tok);
    for (const layer of golden.layers) {
      const out = mapping.hash(golden.input_ids.flat(), [3, 24], layer.layer_id, { device: 'cuda' });
      expect(Array.from(out)).toEqual(layer.hashes.flat(2));
    }
  });

  it('V4.1 rows on the GPU, one call and split with history', async () => {
    const golden = fixture('v41-hash.json');
    const mapping = new NgramHashMapping({ engramVocabSize: 16_000_000, maxNgramSize: 4, layerIds: [1, 14] }, tok);
    const ids = golden.input_ids.flat();
    const mask = golden.token_mask.flat();
    const cpu = mapping.hashRows(ids, [3, 20], { tokenMask: mask, device: 'cpu' });
    const gpu = await mapping.hashRowsAsync(ids, [3, 20], { tokenMask: mask, device: 'cuda' });
    expect(toNumbers(gpu.rowIds)).toEqual(toNumbers(cpu.rowIds));
    expect(Array.from(gpu.history)).toEqual(Array.from(cpu.history));
  });

  it('GPU equals CPU on random configs, int32 and int64', () => {
    for (let i = 0; i < 8; i++) {
      const r = rng(900 + i);
      const maxNgramSize = randInt(r, 2, 6);
      const t = CompressedTokenizer.fromLookup(randomLookup(r, 4000));
      const mapping = new NgramHashMapping(
        { maxNgramSize, nHeadPerNgram: randInt(r, 1, 16), engramVocabSize: randInt(r, 2, 2 ** 31 - 200_000), layerIds: [randInt(r, 0, 40)], seed: i },
        t,
      );
      const B = randInt(r, 1, 8);
      const T = randInt(r, 1, 700);
      const ids = Int32Array.from({ length: B * T }, () => randInt(r, 0, 3999));
      const mask = Uint8Array.from({ length: B * T }, () => (r() < 0.1 ? 0 : 1));
      for (const output of ['int32', 'int64'] as const) {
        if (output === 'int32' && mapping.tableRows(mapping.config.layerIds[0]) > 2 ** 31) continue;
        const cpu = mapping.hashRows(ids, [B, T], { tokenMask: mask, device: 'cpu', output });
        const gpu = mapping.hashRows(ids, [B, T], { tokenMask: mask, device: 'cuda', output });
        expect(Buffer.compare(Buffer.from(gpu.rowIds.buffer), Buffer.from(cpu.rowIds.buffer)), `case ${i} ${output}`).toBe(0);
      }
    }
  });
});
