// Large outputs come from the addon's pool (allocateOutput): exact length, zeroed, zeroed
// again when recycled (except for hashing and the layers' forwards, which write every
// element and take recycled memory as it is), and a default call gives the bits of the
// same call into `out`. Fresh memory is faulted in up front, with small or huge pages.
import { describe, expect, it } from 'vitest';

import { CompressedTokenizer, Engram, NgramHashMapping } from '../src/index.js';
import { native } from '../src/native/index.js';
import { NATIVE_OUTPUT_BYTES } from '../src/core/output.js';
import { collectAndFinalize, gc, leaveGarbageInPool, turn } from './helpers/output-pool.js';

/** The paper layer at 512 tokens x 4 x 256: a 2 MiB output, which comes from the pool. */
function smallLayer(tokenizer: CompressedTokenizer, seed: number) {
  const config = { layerId: 1, layerIds: [1], hiddenSize: 256, hcMult: 4, nEmbedPerNgram: 64, nHeadPerNgram: 2, maxNgramSize: 3, engramVocabSize: [3001, 3001], kernelSize: 4 };
  const T = 512;
  return {
    layer: new Engram(config, { tokenizer, seed }),
    T,
    ids: Int32Array.from({ length: T }, (_, i) => (i * 7919) % 128_000),
    hidden: Float32Array.from({ length: T * 4 * 256 }, (_, i) => Math.sin(i * seed)),
  };
}

describe('outputs the library allocates', () => {
  it('allocateOutput: the exact length, zeroed, and zeroed again when its memory is recycled', async () => {
    const bytes = 3 * 2 ** 20 + 12;
    let a: Uint8Array | undefined = new Uint8Array(native().allocateOutput(bytes));
    expect(a.byteLength).toBe(bytes);
    expect(a.every((v) => v === 0)).toBe(true);
    a.fill(0xab);
    a = undefined;
    await collectAndFinalize(); // finalizers run from the event loop: the memory goes back to the pool
    for (let i = 0; i < 4; i++) {
      const b = new Uint8Array(native().allocateOutput(bytes));
      expect(b.every((v) => v === 0)).toBe(true);
    }
    expect(native().allocateOutput(0).byteLength).toBe(0);
    expect(() => native().allocateOutput(-1)).toThrow(/byteLength must be an integer in \[0, 2\^46\], got -1/);
    expect(() => native().allocateOutput(1.5)).toThrow(RangeError);
    expect(() => native().allocateOutput('8' as unknown as number)).toThrow(TypeError);
  });

  it('a synchronous loop of calls keeps memory bounded, though the pool only gets memory back when the loop yields', () => {
    // Node runs the pool's finalizers from the event loop: without a bound, 1,000 outputs
    // of 2 MiB made and dropped in one synchronous loop stayed resident (the V4.1 pager
    // benchmark ran a 24 GiB machine out of memory this way).
    const rss = () => process.memoryUsage().rss;
    const before = rss();
    for (let i = 0; i < 1000; i++) {
      const out = new Uint8Array(native().allocateOutput(2 * 2 ** 20));
      out.fill(1); // touched: resident if nothing frees it
      if (i % 100 === 99) gc();
    }
    expect(rss() - before).toBeLessThan(900 * 2 ** 20);
    const late = new Uint8Array(native().allocateOutput(3 * 2 ** 20));
    expect(late.byteLength).toBe(3 * 2 ** 20);
    expect(late.every((v) => v === 0)).toBe(true);
  });

  it('a default forward and hashRows (pool-backed outputs) give the bits of the same calls into `out`', async () => {
    const tokenizer = CompressedTokenizer.deepseekV3();
    const { layer, T, ids, hidden } = smallLayer(tokenizer, 5);
    expect(hidden.byteLength).toBeGreaterThanOrEqual(NATIVE_OUTPUT_BYTES); // the output comes from the pool
    const out = new Float32Array(hidden.length);
    layer.forward(hidden, ids, [1, T], { out });
    for (let i = 0; i < 3; i++) {
      const fresh = layer.forward(hidden, ids, [1, T]).output;
      expect(Buffer.from(fresh.buffer).equals(Buffer.from(out.buffer))).toBe(true);
      gc();
      await turn();
    }
    const mapping = new NgramHashMapping({}, tokenizer);
    const many = Int32Array.from({ length: 8 * 4096 }, (_, i) => (i * 104729) % 128_000);
    const rows = mapping.hashRows(many, [8, 4096], { output: 'int32' }).rowIds;
    expect(rows.byteLength).toBeGreaterThanOrEqual(NATIVE_OUTPUT_BYTES);
    const into = new Int32Array(rows.length);
    mapping.hashRows(many, [8, 4096], { output: 'int32', out: into });
    expect(Buffer.from(rows.buffer).equals(Buffer.from(into.buffer))).toBe(true);
  });

  it('hashing and the layers\' forwards take recycled memory without zeroing it (they write every element): garbage there never shows', async () => {
    const mapping = new NgramHashMapping({}, CompressedTokenizer.deepseekV3());
    const many = Int32Array.from({ length: 8 * 4096 }, (_, i) => (i * 104729) % 128_000);
    const want = new Int32Array(8 * 4096 * 16);
    mapping.hash(many, [8, 4096], 1, { out: want });
    const wantRows = new Int32Array(8 * 4096 * 32);
    mapping.hashRows(many, [8, 4096], { output: 'int32', out: wantRows });
    for (let round = 0; round < 3; round++) {
      // Pool memory full of garbage: outputs of the same sizes, filled and let go.
      for (const bytes of [want.byteLength, wantRows.byteLength]) await leaveGarbageInPool(bytes, 0x7f);
      expect(Buffer.from(mapping.hash(many, [8, 4096], 1).buffer).equals(Buffer.from(want.buffer))).toBe(true);
      expect(Buffer.from(mapping.hashRows(many, [8, 4096], { output: 'int32' }).rowIds.buffer).equals(Buffer.from(wantRows.buffer))).toBe(true);
    }
    // The paper layer's output is written in full by its kernel too: a default forward
    // into recycled NaN-filled memory gives the bits of the same forward into `out`.
    const { layer, T, ids, hidden } = smallLayer(CompressedTokenizer.deepseekV3(), 9);
    const out = new Float32Array(hidden.length);
    layer.forward(hidden, ids, [1, T], { out });
    for (let round = 0; round < 3; round++) {
      await leaveGarbageInPool(hidden.byteLength, 0xff); // all NaN as float32
      expect(Buffer.from(layer.forward(hidden, ids, [1, T]).output.buffer).equals(Buffer.from(out.buffer))).toBe(true);
    }
    // Asked for unzeroed memory, the pool hands back what was there (the point of it).
    await leaveGarbageInPool(2 ** 21, 0x7f);
    expect(new Uint8Array(native().allocateOutput(2 ** 21, false)).some((v) => v !== 0)).toBe(true);
  });
});

describe('fresh memory for outputs', () => {
  it('is faulted in up front, and the pool says which kind of page it used and what that cost', () => {
    const before = native().outputPoolStats();
    // A size no other test here uses, in a synchronous loop: nothing to recycle, fresh maps.
    const bytes = 10 * 2 ** 20;
    const outs = Array.from({ length: 30 }, () => new Uint8Array(native().allocateOutput(bytes)));
    const after = native().outputPoolStats();
    const maps = after.smallMaps + after.hugeMaps - (before.smallMaps + before.hugeMaps);
    expect(maps).toBeGreaterThan(0);
    expect(maps).toBe(30);
    expect(after.freshBytes - before.freshBytes).toBe(maps * bytes);
    // Both kinds are tried (small pages first, huge pages next, then the other kind every
    // 32nd map), and each has a cost on record.
    expect(after.smallMaps).toBeGreaterThan(0);
    expect(after.hugeMaps).toBeGreaterThan(0);
    expect(after.smallNsPerMiB).toBeGreaterThan(0);
    expect(after.hugeNsPerMiB).toBeGreaterThan(0);
    expect(after.smallSeconds + after.hugeSeconds).toBeGreaterThan(before.smallSeconds + before.hugeSeconds);
    for (const o of outs) {
      expect(o.every((v) => v === 0)).toBe(true);
    }
  });
});
