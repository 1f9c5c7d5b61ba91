// The remote tier's parts that need no server: the stored page format (every way a value
// can be wrong is refused before the cache sees it), manifests, and the native engine's
// contract (JS fetches and fills a job's rows; waiters block off the JS thread only; an
// abandoned job writes nothing). The tier against real Redis servers: test/remote.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { describe, expect, it } from 'vitest';

import { Engram, EngramTable, stripCheckpoint } from '../src/index.js';
import { remoteIdentity } from '../src/table/tiers.js';
import { native } from '../src/native/index.js';
import { decodePage, encodePage, PAGE_HEADER_BYTES } from '../src/table/remote/page-format.js';
import { manifestMismatch, tableId, type RemoteManifest, type TableIdentity } from '../src/table/remote/identity.js';
import { RemoteStore } from '../src/table/remote/store.js';

const id = 'a73b8cb9a7f47e28330599ce3e190a29';
const payload = Uint8Array.from({ length: 96 }, (_, i) => (i * 37) & 255);

describe('the stored page format', () => {
  it('round-trips a page, and refuses every kind of wrong value by name', () => {
    const v = encodePage(id, 5, 3, payload);
    expect(v.byteLength).toBe(PAGE_HEADER_BYTES + 96);
    expect(Buffer.compare(decodePage(v, 'k', id, 5, 3, 96), Buffer.from(payload))).toBe(0);
    const flipped = Buffer.from(v);
    flipped[PAGE_HEADER_BYTES + 40] ^= 1;
    expect(() => decodePage(flipped, 'k', id, 5, 3, 96)).toThrow(/'k' \(page 5\) fails its CRC32C checksum/);
    expect(() => decodePage(v.subarray(0, v.byteLength - 1), 'k', id, 5, 3, 96)).toThrow(/truncated/);
    expect(() => decodePage(v.subarray(0, 10), 'k', id, 5, 3, 96)).toThrow(/shorter than the 32-byte header/);
    expect(() => decodePage(v, 'k', id, 6, 3, 96)).toThrow(/holds page 5/);
    expect(() => decodePage(v, 'k', 'b' + id.slice(1), 5, 3, 96)).toThrow(/belongs to another table/);
    expect(() => decodePage(v, 'k', id, 5, 4, 128)).toThrow(/holds 3 rows/);
    expect(() => decodePage(null, 'k', id, 5, 3, 96)).toThrow(/is missing/);
    expect(() => decodePage(Buffer.alloc(200), 'k', id, 5, 3, 96)).toThrow(/wrong magic/);
  });

  it('a manifest is checked against the table: tensor, checkpoint headers, geometry, page rows, completeness', () => {
    const identity: TableIdentity = { tensor: 't', headerSha256: ['aa'], sampleSha256: 'cc', dtype: 'bf16', rows: 100, cols: 64 };
    const m: RemoteManifest = { format: 'engram-kernels remote table', version: 1, tableId: tableId(identity), identity, rowBytes: 128, scaleRowBytes: 0, pageRows: 8, pages: 13, buckets: 1024, checksum: 'crc32c', complete: true };
    expect(manifestMismatch(m, identity, 8)).toBeUndefined();
    expect(manifestMismatch(m, { ...identity, headerSha256: ['bb'] }, 8)).toMatch(/another checkpoint/);
    expect(manifestMismatch(m, { ...identity, sampleSha256: 'dd' }, 8)).toMatch(/the table rows differ/);
    expect(manifestMismatch(m, { ...identity, tensor: 'u' }, 8)).toMatch(/holds tensor 't'/);
    expect(manifestMismatch(m, { ...identity, rows: 99 }, 8)).toMatch(/100 x 64/);
    expect(manifestMismatch(m, identity, 16)).toMatch(/pass pageRows: 8/);
    expect(manifestMismatch({ ...m, complete: false }, identity, 8)).toMatch(/has not finished/);
    expect(tableId(identity)).toMatch(/^[0-9a-f]{32}$/);
    expect(tableId({ ...identity, headerSha256: ['bb'] })).not.toBe(tableId(identity));
  });
});

describe("the remote tier's native engine", () => {
  const rows = 64;
  const cols = 32;
  const create = () =>
    native().pagerCreate({ rows, rowBytes: cols * 4, scaleRowBytes: 0, pageRows: 4, slots: 8, hotRows: 0, eviction: 0, simulate: false, bytesPerSecond: 0, remote: true });
  const table = EngramTable.random(rows, cols, 'f32', { seed: 3 });
  const tableBytes = () => new Uint8Array(table.region.buffer as ArrayBuffer, table.region.byteOffset, table.region.byteLength);

  it('JS takes the jobs, fills their rows and completes them; a worker waiting on the ticket then sees the rows', async () => {
    const { pager, cache } = create();
    const ids = Int32Array.from([1, 2, 17, 40]);
    const translated = new Int32Array(4);
    const ticket = native().pagerAcquire(pager, ids, translated);
    const jobs = native().pagerRemoteJobs(pager);
    expect(jobs.length).toBe(1);
    const waited = native().pagerWaitAsync(pager, ticket);
    const c = jobs[0].copies;
    for (let i = 0; i < c.length; i += 3) {
      const [src, dst, n] = [c[i], c[i + 1], c[i + 2]];
      expect(native().pagerRemoteFill(pager, { job: jobs[0].job, dstRow: dst, rows: n, data: tableBytes().subarray(src * cols * 4, (src + n) * cols * 4) })).toBe(true);
    }
    // Rows outside the job's copies are refused (a store cannot write elsewhere in the cache).
    expect(() => native().pagerRemoteFill(pager, { job: jobs[0].job, dstRow: 31, rows: 1, data: new Uint8Array(cols * 4) })).toThrow(/are not job/);
    expect(() => native().pagerRemoteFill(pager, { job: jobs[0].job, dstRow: c[1], rows: 1, data: new Uint8Array(7) })).toThrow(/holds 7 bytes/);
    native().pagerRemoteComplete(pager, jobs[0].job, '', 0.001);
    await waited;
    const view = new Float32Array(native().mappedFileView(cache!, 0, 8 * 4 * cols * 4));
    const want = new Float32Array(table.region.buffer as ArrayBuffer, table.region.byteOffset, rows * cols);
    for (let t = 0; t < 4; t++) {
      for (let k = 0; k < cols; k++) expect(view[translated[t] * cols + k]).toBe(want[ids[t] * cols + k]);
    }
    native().pagerRelease(pager, ticket);
  });

  it('a failed job fails its waiters with the fetcher\'s message; a wait on the JS thread fails at once (never hangs) and abandons the job', async () => {
    const { pager } = create();
    const t1 = native().pagerAcquire(pager, Int32Array.from([0, 5]), new Int32Array(2));
    const [j1] = native().pagerRemoteJobs(pager);
    const w1 = native().pagerWaitAsync(pager, t1);
    native().pagerRemoteComplete(pager, j1.job, "remote tier: page 0 fails its CRC32C checksum", 0);
    await expect(w1).rejects.toThrow(/CRC32C/);
    native().pagerRelease(pager, t1);

    const t2 = native().pagerAcquire(pager, Int32Array.from([9]), new Int32Array(1));
    const [j2] = native().pagerRemoteJobs(pager);
    expect(() => native().pagerWait(pager, t2)).toThrow(/still fetching .*use forwardAsync or waitAsync/);
    // The job was abandoned: a late fill writes nothing, a late completion changes nothing.
    expect(native().pagerRemoteFill(pager, { job: j2.job, dstRow: j2.copies[1], rows: 1, data: new Uint8Array(cols * 4) })).toBe(false);
    native().pagerRemoteComplete(pager, j2.job, '', 0);
    native().pagerRelease(pager, t2);
    // The pager goes on: the same rows again make a new job.
    const t3 = native().pagerAcquire(pager, Int32Array.from([9]), new Int32Array(1));
    expect(native().pagerRemoteJobs(pager).length).toBe(1);
    native().pagerRelease(pager, t3);
  });

  it('fillMany writes a job\'s pieces in one call, all checked before any is written', async () => {
    const { pager, cache } = create();
    const ids = Int32Array.from([3, 30, 50]);
    const translated = new Int32Array(3);
    const ticket = native().pagerAcquire(pager, ids, translated);
    const [j] = native().pagerRemoteJobs(pager);
    const c = j.copies;
    const n = c.length / 3;
    const rowBytes = cols * 4;
    const dstRows = Float64Array.from({ length: n }, (_, i) => c[3 * i + 1]);
    const rowsOf = Float64Array.from({ length: n }, (_, i) => c[3 * i + 2]);
    const offsets = new Float64Array(n);
    let total = 0;
    for (let i = 0; i < n; i++) {
      offsets[i] = total;
      total += rowsOf[i] * rowBytes;
    }
    const data = new Uint8Array(total);
    for (let i = 0; i < n; i++) data.set(tableBytes().subarray(c[3 * i] * rowBytes, (c[3 * i] + rowsOf[i]) * rowBytes), offsets[i]);
    const view = () => new Uint8Array(native().mappedFileView(cache!, 0, 8 * 4 * rowBytes));
    const before = view().slice();
    // One piece outside the job: refused, and nothing of the others written either.
    const bad = Float64Array.from(dstRows);
    bad[n - 1] = 31;
    expect(() => native().pagerRemoteFillMany(pager, { job: j.job, dstRows: bad, rows: rowsOf, dataOffsets: offsets, data })).toThrow(/piece \d+: cache rows 31/);
    expect(Buffer.compare(Buffer.from(view()), Buffer.from(before))).toBe(0);
    expect(() => native().pagerRemoteFillMany(pager, { job: j.job, dstRows, rows: rowsOf, dataOffsets: offsets, data: data.subarray(1) })).toThrow(/runs past data/);
    expect(native().pagerRemoteFillMany(pager, { job: j.job, dstRows, rows: rowsOf, dataOffsets: offsets, data })).toBe(true);
    native().pagerRemoteComplete(pager, j.job, '', 0);
    await native().pagerWaitAsync(pager, ticket);
    const got = new Float32Array(native().mappedFileView(cache!, 0, 8 * 4 * rowBytes));
    const want = new Float32Array(table.region.buffer as ArrayBuffer, table.region.byteOffset, rows * cols);
    for (let t = 0; t < 3; t++) for (let k = 0; k < cols; k++) expect(got[translated[t] * cols + k]).toBe(want[ids[t] * cols + k]);
    native().pagerRelease(pager, ticket);
  });

  it('a pager without the remote tier refuses the remote calls', () => {
    const { pager } = native().pagerCreate({ rows, rowBytes: cols * 4, scaleRowBytes: 0, pageRows: 4, slots: 8, hotRows: 0, eviction: 0, simulate: true, bytesPerSecond: 0 });
    expect(() => native().pagerRemoteJobs(pager)).toThrow(/no remote tier/);
  });
});

describe('remote tier options', () => {
  it('tier remote needs a url of redis:// or rediss://, and a layer loaded from its checkpoint', async () => {
    const layer = new Engram({ engramVocabSize: [1009, 1009], hiddenSize: 32, nEmbedPerNgram: 32 }, { seed: 1 });
    expect(() => layer.usePager({ tier: 'remote' } as never)).toThrow(/url is required for tier 'remote'/);
    expect(() => layer.usePager({ tier: 'remote', url: 'redis://127.0.0.1:1' })).toThrow(/needs a table loaded from its checkpoint/);
    await expect(RemoteStore.connect({ url: 'http://x:1' })).rejects.toThrow(/must use redis:\/\/ or rediss:\/\//);
    await expect(RemoteStore.connect({ url: 'not a url' })).rejects.toThrow(/is not a URL/);
    // Nothing listens on port 1: a clear error naming the endpoint, with no password in it.
    const err = await RemoteStore.connect({ url: 'redis://u:s3cret@127.0.0.1:1', timeoutMs: 2000 }).catch((e: Error) => e);
    expect(String(err)).toMatch(/remote tier: .*127\.0\.0\.1:1/);
    expect(String(err)).not.toMatch(/s3cret/);
  });
});

describe('checkpoints stripped of their tables', () => {
  it('keep every header and every other byte, leave the table as a hole, record the identity, and are refused by every tier but remote', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'engram-strip-'));
    try {
      const whole = path.join(dir, 'layer.safetensors');
      // A table of 1.3 MB, so that its hole spans whole blocks of the file system.
      new Engram({ engramVocabSize: [20_011, 20_011], hiddenSize: 32, nEmbedPerNgram: 32 }, { seed: 3 }).saveSafetensors(whole);
      const stripped = path.join(dir, 'stripped.safetensors');
      const result = stripCheckpoint(whole, stripped);
      expect(result.tensors).toEqual(['multi_head_embedding.embedding.weight']);
      const full = Engram.fromSafetensors(whole);
      expect(result.bytesLeftOut).toBe(full.table.byteLength);
      // Same size, the same bytes outside the table, zeros (a hole) inside it.
      const [a, b] = [fs.readFileSync(whole), fs.readFileSync(stripped)];
      expect(b.length).toBe(a.length);
      const offset = full.tableSource!.data.fileOffset!;
      expect(Buffer.compare(a.subarray(0, offset), b.subarray(0, offset))).toBe(0);
      expect(Buffer.compare(a.subarray(offset + result.bytesLeftOut), b.subarray(offset + result.bytesLeftOut))).toBe(0);
      expect(b.subarray(offset, offset + result.bytesLeftOut).every((x) => x === 0)).toBe(true);
      expect(fs.statSync(stripped).blocks * 512).toBeLessThan(a.length - result.bytesLeftOut / 2);
      // The identity the remote tier checks the store against is the whole checkpoint's.
      const record = JSON.parse(fs.readFileSync(`${stripped}.engram-stripped.json`, 'utf8'));
      expect(record.tables).toEqual([remoteIdentity(full.table, full.tableSource!)]);
      // Read directly, from the file or behind a host cache: never (the rows would be zeros).
      const refused = /holds no rows of 'multi_head_embedding\.embedding\.weight': its checkpoint was stripped .* tier: 'remote'/;
      expect(() => Engram.fromSafetensors(stripped)).toThrow(refused);
      expect(() => Engram.fromSafetensors(stripped, { table: { tier: 'file' } })).toThrow(refused);
      expect(() => Engram.fromSafetensors(stripped, { table: { tier: 'host', cacheBytes: 1 << 20 } })).toThrow(refused);
      // A stripped checkpoint cannot be stripped again, and an existing target is not overwritten.
      expect(() => stripCheckpoint(stripped, path.join(dir, 'again.safetensors'))).toThrow(refused);
      expect(() => stripCheckpoint(whole, stripped)).toThrow(/already exists/);
      // A record that does not belong to the files beside it is an error, not a reason to read them.
      fs.copyFileSync(`${stripped}.engram-stripped.json`, `${whole}.engram-stripped.json`);
      new Engram({ engramVocabSize: [20_011, 20_011], hiddenSize: 32, nEmbedPerNgram: 64 }, { seed: 3 }).saveSafetensors(whole);
      expect(() => Engram.fromSafetensors(whole)).toThrow(/headers differ .* do not belong together/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
