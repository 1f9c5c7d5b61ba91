// Buffers detached while an async call runs. JS can transfer any plain ArrayBuffer away
// (postMessage, structuredClone with a transfer list) and let the receiver collect it;
// a worker still reading or writing it used to read freed memory (SIGSEGV). Now async
// calls copy the arrays JS owns in (and results back out, if the target is still
// attached), pin the addon's own memory, and tables' buffers are untransferable. The
// transfers run in a child process, which must survive.
import { spawnSync } from 'node:child_process';
import path from 'node:path';

import { describe, expect, it } from 'vitest';

import { CompressedTokenizer, Engram, NgramHashMapping } from '../src/index.js';
import { native } from '../src/native/index.js';

describe('buffers detached during async calls', () => {
  it('hashRowsAsync, Engram.forwardAsync, MoE.forwardAsync and forwardRowsAsync: an input transferred away still gives the sync bits (or a clear error), an output transferred away is a clear error, and the process lives', () => {
    const script = path.join(__dirname, 'helpers', 'detach-during-async.ts');
    const run = spawnSync(process.execPath, ['--expose-gc', '--import', 'tsx', script, 'hash', 'engram', 'moe', 'v41', 'table', 'owned'], { encoding: 'utf8', timeout: 240_000 });
    expect(run.signal, run.stderr).toBeNull();
    expect(run.status, run.stderr).toBe(0);
    const { report } = JSON.parse(run.stdout.trim().split('\n').at(-1)!);
    for (const kind of ['hash', 'engram', 'v41']) {
      // These copy their inputs before the promise is returned: the result is unaffected.
      expect(report[kind].input, kind).toEqual({ same: 6, 'detached-error': 0, wrong: 0, 'other-error': 0 });
      expect(report[kind].out, kind).toEqual({ same: 0, 'detached-error': 6, wrong: 0, 'other-error': 0 });
      expect(report[kind].untouched, kind).toBe('same');
    }
    // MoE reads its input again after the routing's await: a transfer in between is named.
    expect(report.moe.input.wrong + report.moe.input['other-error']).toBe(0);
    expect(report.moe.out).toEqual({ same: 0, 'detached-error': 6, wrong: 0, 'other-error': 0 });
    expect(report.moe.untouched).toBe('same');
    // A table's buffer stays with the table: Node 20 copies it instead, later versions refuse.
    expect(report.table.stillAttached).toBe(true);
    // The addon's own memory as `out`: never detached, the result lands.
    expect(report.owned).toEqual({ settled: 'resolved', attached: true, same: true });
  }, 300_000);

  it('the addon pins its own memory instead of copying it: an async hash into a default output copies only the ids', async () => {
    const tok = CompressedTokenizer.fromLookup(Array.from({ length: 50_000 }, (_, i) => i));
    const mapping = new NgramHashMapping({ engramVocabSize: 100003, maxNgramSize: 3, nHeadPerNgram: 8, layerIds: [1] }, tok);
    const ids = new Int32Array(1 << 16).map((_, i) => (i * 31) % 50_000);
    const want = mapping.hashRows(ids, [1, ids.length]).rowIds;
    const before = native().stagingStats().bytes;
    const got = await mapping.hashRowsAsync(ids, [1, ids.length]);
    // The ids and the 2-id history the call hands back (JS's) are copied; the 200 KB
    // lookup (allocateOwned) and the 2 MiB output (the pool's) are pinned.
    expect(native().stagingStats().bytes - before).toBe(ids.byteLength + 2 * 4);
    expect(Buffer.compare(Buffer.from(got.rowIds.buffer, got.rowIds.byteOffset, got.rowIds.byteLength), Buffer.from(want.buffer, want.byteOffset, want.byteLength))).toBe(0);
  });

  it('the paper layer copies its hidden states while its worker gathers and projects: the copy is complete when forwardAsync returns', async () => {
    const layer = new Engram({ engramVocabSize: [1009, 1009], hiddenSize: 32, nEmbedPerNgram: 32 }, { seed: 1 });
    const T = 64;
    const ids = new Int32Array(T).map((_, i) => (i * 13) % 1000);
    const hidden = Float32Array.from({ length: T * 4 * 32 }, (_, i) => Math.sin(i * 0.1));
    const want = layer.forward(hidden, ids, [1, T]).output;
    const before = native().stagingStats();
    const pending = layer.forwardAsync(hidden, ids, [1, T]);
    // Whatever JS does to the array from here on, the worker reads its own copy.
    hidden.fill(Number.NaN);
    const got = (await pending).output;
    const after = native().stagingStats();
    expect(after.lateSeconds).toBeGreaterThan(before.lateSeconds);
    expect(after.bytes - before.bytes).toBeGreaterThanOrEqual(hidden.byteLength);
    expect(Buffer.compare(Buffer.from(got.buffer, got.byteOffset, got.byteLength), Buffer.from(want.buffer, want.byteOffset, want.byteLength))).toBe(0);
  });

  it('a written array is copied back only when the call succeeds: a failed async forward leaves `out` as it was', async () => {
    const layer = new Engram({ engramVocabSize: [1009, 1009], hiddenSize: 32, nEmbedPerNgram: 32 }, { seed: 1 });
    const hidden = new Float32Array(1 * 8 * 4 * 32).fill(0.5);
    const out = new Float32Array(hidden.length).fill(7);
    const bad = new Int32Array(8).fill(-5); // negative ids: refused
    await expect(layer.forwardAsync(hidden, bad, [1, 8], { out })).rejects.toThrow();
    expect(out.every((v) => v === 7)).toBe(true);
  });
});
