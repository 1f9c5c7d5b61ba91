// A memory-mapped file truncated by another process while it is in use. Reading a page past
// the new end raises SIGBUS, which used to kill the process; now the read that met it
// fails with an error naming the file, every later read of the lost part fails the same
// way (never zeros), and once the file holds its bytes again the reads give its bits.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { DeepseekV41EngramModel, Engram, writeSyntheticV41Checkpoint } from '../src/index.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'engram-truncated-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
const same = (a: Float32Array, b: Float32Array) => Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0;
const shrank = (file: string) => new RegExp(`the memory-mapped file '${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}' shrank .* open the file again`);

describe('a mapped file truncated under a layer', () => {
  it("the paper's layer: sync and async forwards fail naming the file, and succeed with the original bits once the file is whole again", async () => {
    const file = path.join(dir, 'layer.safetensors');
    new Engram({ engramVocabSize: [100_000, 100_000], hiddenSize: 64, nEmbedPerNgram: 64 }, { seed: 1 }).saveSafetensors(file);
    const original = fs.readFileSync(file);
    const engram = Engram.fromSafetensors(file);
    const ids = Int32Array.from({ length: 2 * 512 }, (_, i) => (i * 7919) % 120_000);
    const hidden = Float32Array.from({ length: 2 * 512 * 4 * 64 }, (_, i) => Math.sin(i));
    const want = engram.forward(hidden, ids, [2, 512]).output.slice();

    // An intact layer in the same process is not disturbed by the other file's fault.
    const otherFile = path.join(dir, 'other.safetensors');
    new Engram({ engramVocabSize: [100_000, 100_000], hiddenSize: 64, nEmbedPerNgram: 64 }, { seed: 2 }).saveSafetensors(otherFile);
    const other = Engram.fromSafetensors(otherFile);
    const otherWant = other.forward(hidden, ids, [2, 512]).output.slice();

    fs.truncateSync(file, Math.floor(original.length / 3));
    expect(() => engram.forward(hidden, ids, [2, 512])).toThrow(shrank(file));
    expect(() => engram.forward(hidden, ids, [2, 512])).toThrow(shrank(file)); // the lost part faults again: no stale zeros
    await expect(engram.forwardAsync(hidden, ids, [2, 512])).rejects.toThrow(shrank(file));
    expect(same(other.forward(hidden, ids, [2, 512]).output, otherWant)).toBe(true);

    fs.writeFileSync(file, original); // same inode, whole again
    expect(same(engram.forward(hidden, ids, [2, 512]).output, want)).toBe(true);
    expect(same((await engram.forwardAsync(hidden, ids, [2, 512])).output, want)).toBe(true);
  });

  it("DeepSeek-V4.1's layers over model{rank}-mp2 files, in memory and through the pager's host tier: a truncated rank file fails the forward by name", async () => {
    const ckpt = path.join(dir, 'v41');
    writeSyntheticV41Checkpoint(ckpt, { rowsScale: 1e-5, hiddenSize: 64, seed: 3, mp: 2 });
    const rank1 = path.join(ckpt, 'model1-mp2.safetensors');
    const original = fs.readFileSync(rank1);
    const inMemory = DeepseekV41EngramModel.fromCheckpoint(ckpt);
    const rows = inMemory.layers.get(1)!.table.rows;
    const paged = DeepseekV41EngramModel.fromCheckpoint(ckpt, { table: { tier: 'host', cacheBytes: Math.floor((rows * 264) / 2), pageRows: 1 } });
    const [B, S] = [2, 64];
    const ids = Int32Array.from({ length: B * S }, (_, i) => (i * 104_729) % 128_000);
    const streams = new Map([1, 14].map((id) => [id, Float32Array.from({ length: B * S * 4 * 64 }, (_, i) => Math.cos(i + id))]));
    const want = inMemory.forward(streams, ids, [B, S]);

    // Cut rank 1 inside its table rows (past the replicated weights at its start).
    fs.truncateSync(rank1, Math.floor(original.length * 0.6));
    expect(() => inMemory.forward(streams, ids, [B, S])).toThrow(shrank(rank1));
    await expect(inMemory.forwardAsync(streams, ids, [B, S])).rejects.toThrow(shrank(rank1));
    for (let attempt = 0; attempt < 2; attempt++) {
      const ticket = paged.prefetch(ids, [B, S]);
      expect(() => paged.forward(streams, ids, [B, S], { ticket })).toThrow(shrank(rank1));
    }
    expect(paged.layers.get(1)!.pagerStats().ticketsInFlight).toBe(0);

    fs.writeFileSync(rank1, original);
    for (const model of [inMemory, paged]) {
      const got = model.forward(streams, ids, [B, S]);
      for (const id of [1, 14]) expect(same(got.outputs.get(id)!.output, want.outputs.get(id)!.output)).toBe(true);
    }
  });
});
