// The remote tier's parts that need no server: the stored page format (every way a value
// can be wrong is refused before the cache sees it), manifests, and the native engine's
// contract (JS fetches and fills a job's rows; waiters block off the JS thread only; an
// abandoned job writes nothing). The tier against real Redis servers: test/remote.
import fs from 'node:fs';
import net from 'node:net';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';

import { describe, expect, it } from 'vitest';

import { Engram, EngramTable, stripCheckpoint } from '../src/index.js';
import { remoteIdentity } from '../src/table/tiers.js';
import { native } from '../src/native/index.js';
import { decodePage, encodePage, PAGE_HEADER_BYTES, tableTagBytes } from '../src/table/remote/page-format.js';
import { manifestMismatch, tableId, type RemoteManifest, type TableIdentity } from '../src/table/remote/identity.js';
import { RemoteStore } from '../src/table/remote/store.js';
import { DirectReads } from '../src/table/remote/direct-reads.js';
import { encodeCommand, RespErrorReply, RespProtocolError, RespReplyParser, type RespReply } from '../src/table/remote/resp.js';

const id = 'a73b8cb9a7f47e28330599ce3e190a29';
// An independent CRC32C (napi-rs, SIMD) to check the addon's against.
const referenceCrc32c = (createRequire(import.meta.url)('@node-rs/crc32') as { crc32c: (b: Buffer) => number }).crc32c;
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
    expect(manifestMismatch({ ...m, pageKeys: 3 as never }, identity, 8)).toMatch(/page keys are spelled in format 3/);
    expect(manifestMismatch({ ...m, pageKeys: 2 }, identity, 8)).toBeUndefined();
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

  it('fillPages checks every stored page (header, CRC32C) before it writes any of the job\'s rows, then writes rows and scales from them', async () => {
    const pageRows = 4;
    const scaleRowBytes = 2;
    const rowBytes = cols * 4;
    const fullRow = rowBytes + scaleRowBytes;
    const { pager, cache } = native().pagerCreate({ rows: 62, rowBytes, scaleRowBytes, pageRows, slots: 8, hotRows: 0, eviction: 0, simulate: false, bytesPerSecond: 0, remote: true });
    // Table row r: its rowBytes bytes, then its scale bytes; a page stores its rows, then their scales.
    const home = Uint8Array.from({ length: 62 * fullRow }, (_, i) => (i * 131 + 7) & 255);
    const pageValue = (p: number) => {
      const n = Math.min(pageRows, 62 - p * pageRows);
      const payload = new Uint8Array(n * fullRow);
      for (let r = 0; r < n; r++) {
        const row = home.subarray((p * pageRows + r) * fullRow, (p * pageRows + r + 1) * fullRow);
        payload.set(row.subarray(0, rowBytes), r * rowBytes);
        payload.set(row.subarray(rowBytes), n * rowBytes + r * scaleRowBytes);
      }
      return encodePage(id, p, n, payload);
    };
    const ids = Int32Array.from([3, 30, 61, 2]); // pages 0, 7 and 15 (the last, of 2 rows)
    const translated = new Int32Array(ids.length);
    const ticket = native().pagerAcquire(pager, ids, translated);
    const [j] = native().pagerRemoteJobs(pager);
    const pages = Float64Array.from([15, 0, 7]); // any order
    const good = () => [...pages].map(pageValue);
    const tableTag = tableTagBytes(id);
    const fill = (values: Array<Buffer | null>, p = pages, tag: Uint8Array = tableTag) => native().pagerRemoteFillPages(pager, { job: j.job, pages: p, values, tableTag: tag });
    const dataView = () => Buffer.from(native().mappedFileView(cache!, 0, 8 * pageRows * rowBytes));
    const before = dataView();
    const flipped = good();
    flipped[2][PAGE_HEADER_BYTES + 9] ^= 4;
    expect(fill(flipped)).toBe(2);
    const swapped = good();
    expect(fill([swapped[1], swapped[0], swapped[2]])).toBe(0); // page 0's value where page 15's belongs
    expect(fill([null, ...good().slice(1)])).toBe(0);
    expect(fill(good().map((v, i) => (i === 1 ? v.subarray(0, v.byteLength - 1) : v)))).toBe(1);
    expect(fill(good(), pages, tableTagBytes('b' + id.slice(1)))).toBe(0);
    expect(() => fill(good().slice(1), pages.subarray(1))).toThrow(/needs page 15, which was not given/);
    expect(() => fill(good(), Float64Array.from([15, 0, 16]))).toThrow(/pages\[2\] must be a page of the table/);
    expect(() => fill(good().slice(1))).toThrow(/values must be an Array of 3/);
    expect(dataView().equals(before)).toBe(true);
    expect(fill(good())).toBe(-1);
    native().pagerRemoteComplete(pager, j.job, '', 0);
    await native().pagerWaitAsync(pager, ticket);
    const data = dataView();
    const scales = Buffer.from(native().mappedFileView(cache!, 8 * pageRows * rowBytes, 8 * pageRows * scaleRowBytes));
    ids.forEach((r, t) => {
      const row = home.subarray(r * fullRow, (r + 1) * fullRow);
      expect(data.subarray(translated[t] * rowBytes, (translated[t] + 1) * rowBytes).equals(row.subarray(0, rowBytes))).toBe(true);
      expect(scales.subarray(translated[t] * scaleRowBytes, (translated[t] + 1) * scaleRowBytes).equals(row.subarray(rowBytes))).toBe(true);
    });
    // The job is complete: a late fill writes nothing.
    expect(fill(good())).toBe(-2);
    native().pagerRelease(pager, ticket);
  });

  it('CRC32C: the addon\'s checksum (SSE4.2 where the CPU has it, and the table path) equals an independent implementation\'s', () => {
    const bytes = Uint8Array.from({ length: 70_000 }, (_, i) => (i * 2654435761) >>> 24);
    for (const n of [0, 1, 7, 8, 9, 31, 32, 33, 264, 1000, 65_536, 70_000]) {
      for (const start of [0, 3]) {
        const slice = bytes.subarray(start, Math.min(bytes.length, start + n));
        const want = referenceCrc32c(Buffer.from(slice)) >>> 0;
        expect(native().crc32c(slice)).toBe(want);
        expect(native().crc32c(slice, true)).toBe(want);
      }
    }
    expect(native().crc32c(new TextEncoder().encode('123456789'))).toBe(0xe3069283); // the CRC-32C check value
  });

  it('a pager without the remote tier refuses the remote calls', () => {
    const { pager } = native().pagerCreate({ rows, rowBytes: cols * 4, scaleRowBytes: 0, pageRows: 4, slots: 8, hotRows: 0, eviction: 0, simulate: true, bytesPerSecond: 0 });
    expect(() => native().pagerRemoteJobs(pager)).toThrow(/no remote tier/);
  });
});

describe("RESP replies, as the remote tier's direct page reads parse them", () => {
  // A stream of the replies MGET, AUTH and errors give, with values of every length class.
  const values = (n: number, salt: number): Array<Buffer | null> =>
    Array.from({ length: n }, (_, i) => ((i + salt) % 5 === 3 ? null : Buffer.from(Array.from({ length: ((i * 97 + salt) % 120) + (i === 1 ? 1500 : 0) }, (_, j) => (j * 31 + i + salt) & 255))));
  const encode = (r: RespReply): string => {
    if (r === null) return '*-1\r\n';
    if (r instanceof RespErrorReply) return `-${r.message}\r\n`;
    if (typeof r === 'number') return `:${r}\r\n`;
    if (typeof r === 'string') return `+${r}\r\n`;
    if (Buffer.isBuffer(r)) return `$${r.length}\r\n${r.toString('latin1')}\r\n`;
    return `*${r.length}\r\n` + r.map((v) => (v === null ? '$-1\r\n' : `$${v.length}\r\n${v.toString('latin1')}\r\n`)).join('');
  };
  const replies: RespReply[] = ['OK', values(7, 1), new RespErrorReply('MOVED 1234 127.0.0.1:7001'), values(1, 2), [], values(30, 3), -17, Buffer.from('a\r\nb'), values(3, 4), 0];
  const stream = Buffer.from(replies.map(encode).join(''), 'latin1');
  // Replies compared as their encoding (which names every type and holds every byte).
  const expected = replies.map(encode).join('|');
  const parseIn = (cuts: number[]): string => {
    const got: RespReply[] = [];
    const parser = new RespReplyParser((r) => got.push(r));
    let at = 0;
    for (const c of [...cuts, stream.length]) {
      parser.feed(stream.subarray(at, c));
      at = c;
    }
    return got.map(encode).join('|');
  };

  it('gives every reply, in order, with the same bytes, however the stream is cut into chunks', () => {
    expect(parseIn([])).toBe(expected);
    for (let cut = 1; cut < stream.length; cut++) expect(parseIn([cut])).toBe(expected);
    let seed = 5;
    for (let trial = 0; trial < 200; trial++) {
      const cuts = [...new Set(Array.from({ length: 1 + (trial % 40) }, () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) % stream.length))].sort((a, b) => a - b);
      expect(parseIn(cuts)).toBe(expected);
    }
    // One byte at a time.
    expect(parseIn(Array.from({ length: stream.length - 1 }, (_, i) => i + 1))).toBe(expected);
  });

  it('refuses bytes that are not such replies (the connection is then dropped and its reads go through the client)', () => {
    for (const bad of ['?what\r\n', '*2\r\n:1\r\n:2\r\n', '$3\r\nabcd\r\n', '*x\r\n', '+OK\rX\n', '$\r\n']) {
      const parser = new RespReplyParser(() => undefined);
      expect(() => parser.feed(Buffer.from(bad, 'latin1')), bad).toThrow(RespProtocolError);
    }
  });

  it('encodes commands with byte lengths', () => {
    expect(encodeCommand(['MGET', 'ek:{a.1}:7', 'é'])).toBe('*3\r\n$4\r\nMGET\r\n$10\r\nek:{a.1}:7\r\n$2\r\né\r\n');
  });
});

describe("the remote tier's direct page reads", () => {
  it('read a group with one MGET on its node, keep a link that is used, and close one no read has used for idleCloseMs', async () => {
    // A node that answers every MGET of one key with 'hello'.
    let connections = 0;
    let closed = 0;
    const server = net.createServer((socket) => {
      connections++;
      let pending = '';
      socket.on('data', (chunk) => {
        pending += chunk.toString('latin1');
        const commands = pending.split('MGET').length - 1;
        pending = pending.slice(pending.lastIndexOf('MGET') + 4);
        socket.write('*1\r\n$5\r\nhello\r\n'.repeat(commands));
      });
      socket.on('close', () => closed++);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const node = `127.0.0.1:${(server.address() as net.AddressInfo).port}`;
    const direct = new DirectReads({ replyTimeoutMs: 2000, idleCloseMs: 300 });
    const readOnce = async () => {
      const values: Array<Buffer | null> = [null];
      expect(await direct.read(['ek:{a.1}:7'], [[0]], () => node, values)).toEqual([]);
      expect(values[0]?.toString()).toBe('hello');
    };
    try {
      // Used every 100 ms for 900 ms: the same link throughout.
      for (let i = 0; i < 9; i++) {
        await readOnce();
        await new Promise((r) => setTimeout(r, 100));
      }
      expect([connections, closed]).toEqual([1, 0]);
      expect(direct.linkedNodes).toEqual([node]);
      // Unused: closed within 1.5 x idleCloseMs, and not held against the node.
      await new Promise((r) => setTimeout(r, 700));
      expect(direct.linkedNodes).toEqual([]);
      expect(closed).toBe(1);
      await readOnce();
      expect(connections).toBe(2);
      expect(direct.stats).toEqual({ direct: 10, handedBack: 0 });
    } finally {
      direct.close();
      await new Promise((r) => server.close(r));
    }
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
