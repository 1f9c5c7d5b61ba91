import { describe, expect, it } from 'vitest';

import { maxRelError, small, smallEngram, smallInputs } from './helpers/forward-small.js';

describe('Engram forward equals the reference (forward-small.json)', () => {
  const engram = smallEngram();
  const { hidden, ids, shape } = smallInputs();

  it('hashes the fixture ids to the fixture per-head ids', () => {
    const rows = engram.hashMapping.hashRows(ids, shape, { layers: [small.config.layer_id], output: 'int32' });
    const offsets = engram.hashMapping.headOffsets(small.config.layer_id);
    const perHead = Array.from(rows.rowIds as Int32Array, (r, i) => r - offsets[i % offsets.length]);
    expect(perHead).toEqual(small.hashes.flat(2));
  });

  it('gathers the embeddings exactly', () => {
    const r = engram.forward(hidden, ids, shape, { returnEmbeddings: true });
    expect(Array.from(r.embeddings!)).toEqual(Array.from(Float32Array.from(small.embeddings)));
  });

  it('gates and output within 1e-4 * (1 + |x|)', () => {
    const r = engram.forward(hidden, ids, shape);
    expect(maxRelError(r.gates, small.gates)).toBeLessThan(1e-4);
    expect(maxRelError(r.output, small.output)).toBeLessThan(1e-4);
    expect(engram.gates).toBe(r.gates);
  });

  it('async forward gives the same bits', async () => {
    const sync = engram.forward(hidden, ids, shape);
    const async = await engram.forwardAsync(hidden, ids, shape);
    expect(Buffer.compare(Buffer.from(async.output.buffer), Buffer.from(sync.output.buffer))).toBe(0);
  });

  it('one thread and all threads give the same bits', () => {
    const one = engram.forward(hidden, ids, shape, { threads: 1 });
    const all = engram.forward(hidden, ids, shape);
    expect(Buffer.compare(Buffer.from(one.output.buffer), Buffer.from(all.output.buffer))).toBe(0);
    expect(Buffer.compare(Buffer.from(one.gates.buffer), Buffer.from(all.gates.buffer))).toBe(0);
  });
});
