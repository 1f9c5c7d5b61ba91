// The remote tier against real Redis servers, started here and torn down after: a cluster
// of 3 masters + 3 replicas for the bits and the faults, single servers for AUTH and TLS.
// Run by `npm run test:remote` (needs Debian's redis-server; .ci/run installs it).
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { DeepseekV41EngramModel, Engram, writeSyntheticV41Checkpoint } from '../../src/index.js';
import { pushCheckpoint } from '../../src/table/remote/push-checkpoint.js';
import { makeTlsFiles, startRedis, type RedisSetup } from './cluster.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'engram-remote-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));
const same = (a: Float32Array, b: Float32Array) => Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0;
let seed = 7;
const rand = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);

function paperLayer(dtype: 'f32' | 'bf16', name: string): string {
  const file = path.join(root, `${name}.safetensors`);
  new Engram({ engramVocabSize: [20_011, 20_011], hiddenSize: 32, nEmbedPerNgram: 64 }, { seed: 3, tableDtype: dtype }).saveSafetensors(file);
  return file;
}
const paperBatch = (B: number, S: number) => ({
  ids: Int32Array.from({ length: B * S }, () => Math.floor(rand() * 120_000)),
  hidden: Float32Array.from({ length: B * S * 4 * 32 }, () => rand() * 2 - 1),
});

/** `batches` random batches of 2 x 8 through both V4.1 models: the remote one gives the in-memory bits. */
async function expectV41Bits(mem: DeepseekV41EngramModel, remote: DeepseekV41EngramModel, batches: number): Promise<void> {
  const [B, S] = [2, 8];
  for (let b = 0; b < batches; b++) {
    const ids = Int32Array.from({ length: B * S }, () => Math.floor(rand() * 128_000));
    const streams = new Map([1, 14].map((id) => [id, Float32Array.from({ length: B * S * 4 * 64 }, () => rand() * 4 - 2)]));
    const want = mem.forward(streams, ids, [B, S]);
    const got = await remote.forwardAsync(streams, ids, [B, S]);
    for (const id of [1, 14]) expect(same(got.outputs.get(id)!.output, want.outputs.get(id)!.output)).toBe(true);
  }
}

describe('the remote tier on a Redis Cluster (3 masters + 3 replicas)', () => {
  let redis: RedisSetup;
  beforeAll(async () => {
    redis = await startRedis();
  }, 60_000);
  afterAll(async () => redis?.stop());

  for (const dtype of ['f32', 'bf16'] as const) {
    it(`the paper's layer (${dtype}): pushed, then read through a cache smaller than the table, gives the in-memory bits batch after batch`, async () => {
      const file = paperLayer(dtype, `paper-${dtype}`);
      const [pushed] = await pushCheckpoint(file, { url: redis.url }, { pageRows: 8 });
      expect(pushed.sent).toBe(pushed.pages);
      // A second push finds every page intact and sends nothing.
      expect((await pushCheckpoint(file, { url: redis.url }, { pageRows: 8 }))[0].sent).toBe(0);
      const mem = Engram.fromSafetensors(file);
      const rowBytes = mem.table.rowBytes;
      const rows = mem.table.rows;
      // bf16 reads through the cluster client alone (directReads false), f32 through the direct connections.
      const directReads = dtype === 'f32';
      const remote = Engram.fromSafetensors(file, { table: { tier: 'remote', url: redis.url, cacheBytes: Math.floor((rows * rowBytes) / 3), pageRows: 8, directReads } });
      await remote.remoteReady();
      expect(remote.pager!.slots * 8).toBeLessThan(rows / 2);
      for (let b = 0; b < 8; b++) {
        const { ids, hidden } = paperBatch(2, 64);
        const want = mem.forward(hidden, ids, [2, 64]).output;
        // Half the batches prefetch first, as a pipeline does one layer ahead.
        const prefetch = b % 2 ? remote.prefetch(ids, [2, 64]) : undefined;
        const got = (await remote.forwardAsync(hidden, ids, [2, 64], prefetch ? { ticket: prefetch } : {})).output;
        expect(same(got, want)).toBe(true);
      }
      // A prefetch awaited (pages arrived) serves a synchronous forward; without the
      // await, a synchronous forward on pages in flight fails at once (never hangs).
      const { ids, hidden } = paperBatch(2, 64);
      const prefetch = remote.prefetch(ids, [2, 64]);
      await prefetch.arrived();
      expect(same(remote.forward(hidden, ids, [2, 64], { ticket: prefetch }).output, mem.forward(hidden, ids, [2, 64]).output)).toBe(true);
      const next = paperBatch(2, 64);
      expect(() => remote.forward(next.hidden, next.ids, [2, 64])).toThrow(/still fetching .*use forwardAsync/);
      const stats = remote.pager!.remoteStats()!;
      expect(stats.failedJobs).toBe(0);
      expect(stats.pages).toBeGreaterThan(0);
      // Every read on one path: none handed to the client on a healthy cluster.
      expect(directReads ? stats.directMgets : stats.clientMgets).toBeGreaterThan(stats.jobs);
      expect(directReads ? stats.clientMgets : stats.directMgets).toBe(0);
      await remote.close();
    });
  }

  it("DeepSeek-V4.1's fp8 tables (model{rank}-mp2 shards): both layers give the in-memory bits; `engram store push` uploads them", async () => {
    const dir = path.join(root, 'v41');
    writeSyntheticV41Checkpoint(dir, { rowsScale: 2e-5, hiddenSize: 64, hcMult: 4, seed: 5, mp: 2 });
    const out = execFileSync(process.execPath, ['--import', 'tsx', path.join(__dirname, '../../src/cli/main.ts'), 'store', 'push', dir, '--url', redis.url, '--page-rows', '4', '--json'], { encoding: 'utf8' });
    const results = JSON.parse(out) as Array<{ layerId: number; pages: number; sent: number }>;
    expect(results.map((r) => r.layerId).sort((a, b) => a - b)).toEqual([1, 14]);
    for (const r of results) expect(r.sent).toBe(r.pages);
    const mem = DeepseekV41EngramModel.fromCheckpoint(dir);
    const rows = mem.layers.get(1)!.table.rows;
    const remote = DeepseekV41EngramModel.fromCheckpoint(dir, { table: { tier: 'remote', url: redis.url, cacheBytes: Math.floor((rows * 264) / 2), pageRows: 4 } });
    await remote.remoteReady();
    await expectV41Bits(mem, remote, 6);
    await remote.close();
  });

  it('a checkpoint stripped of its tables (`engram store strip`) serves the same bits through the remote tier, and no other tier reads it', async () => {
    const dir = path.join(root, 'v41'); // pushed by the test above
    const stripped = path.join(root, 'v41-stripped');
    const out = execFileSync(process.execPath, ['--import', 'tsx', path.join(__dirname, '../../src/cli/main.ts'), 'store', 'strip', dir, stripped, '--json'], { encoding: 'utf8' });
    const result = JSON.parse(out) as { tensors: string[]; bytesLeftOut: number };
    expect(result.tensors.sort()).toEqual(['layers.1.engram.embed.weight', 'layers.14.engram.embed.weight']);
    expect(() => DeepseekV41EngramModel.fromCheckpoint(stripped)).toThrow(/holds no rows of 'layers\.1\.engram\.embed\.weight'.*tier: 'remote'/);
    const mem = DeepseekV41EngramModel.fromCheckpoint(dir);
    const rows = mem.layers.get(1)!.table.rows;
    const remote = DeepseekV41EngramModel.fromCheckpoint(stripped, { table: { tier: 'remote', url: redis.url, cacheBytes: Math.floor((rows * 264) / 2), pageRows: 4 } });
    await remote.remoteReady(); // the manifest's identity matches the recorded one
    await expectV41Bits(mem, remote, 4);
    await remote.close();
  });

  it('a corrupt value is a checksum error naming the key, never wrong bits; the next batch after a re-push works', async () => {
    const file = paperLayer('bf16', 'corrupt');
    const [pushed] = await pushCheckpoint(file, { url: redis.url }, { pageRows: 8 });
    const mem = Engram.fromSafetensors(file);
    const remote = Engram.fromSafetensors(file, { table: { tier: 'remote', url: redis.url, cacheBytes: mem.table.rows * 128, pageRows: 8 } });
    await remote.remoteReady();
    const { ids, hidden } = paperBatch(1, 16);
    const rowsOf = remote.hashMapping.hashRows(ids, [1, 16], { layers: [1] }).rowIds;
    const page = Number(rowsOf[0]) >> 3;
    expect(pushed.pageKeys).toBe(2);
    const key = `ek:{${pushed.tableId.slice(0, 16)}.${page % pushed.buckets}}:${page}`;
    // One payload byte changed in place, on whichever node holds the key.
    const before = redis.cliCluster(redis.ports[0], 'GETRANGE', key, '40', '40');
    redis.cliCluster(redis.ports[0], 'SETRANGE', key, '40', before === 'X\n' ? 'Y' : 'X');
    await expect(remote.forwardAsync(hidden, ids, [1, 16])).rejects.toThrow(`'${key}' (page ${page}) fails its CRC32C checksum`);
    // A plain resume compares headers, which the altered value kept; a repair reads the
    // pages whole and re-sends the one that fails. Nothing of the failed batch stayed in
    // the cache: the same batch then gives the in-memory bits.
    expect((await pushCheckpoint(file, { url: redis.url }, { pageRows: 8 }))[0].sent).toBe(0);
    expect((await pushCheckpoint(file, { url: redis.url }, { pageRows: 8, repair: true }))[0].sent).toBe(1);
    expect(same((await remote.forwardAsync(hidden, ids, [1, 16])).output, mem.forward(hidden, ids, [1, 16]).output)).toBe(true);
    await remote.close();
  });

  it('a table pushed with the first releases\' page keys (format 1) is still read, resumed in that format, and refused a push in another', async () => {
    // A table of its own (another seed): the other tests pushed theirs with format 2.
    const file = path.join(root, 'keys-v1.safetensors');
    new Engram({ engramVocabSize: [20_011, 20_011], hiddenSize: 32, nEmbedPerNgram: 64 }, { seed: 5, tableDtype: 'f32' }).saveSafetensors(file);
    const [pushed] = await pushCheckpoint(file, { url: redis.url }, { pageRows: 8, pageKeys: 1 });
    expect(pushed.pageKeys).toBe(1);
    const manifest = JSON.parse(redis.cliCluster(redis.ports[0], 'GET', `ek:${pushed.tableId}:manifest`)) as { pageKeys?: number };
    expect(manifest.pageKeys).toBeUndefined(); // as the first releases wrote it
    const page = 5;
    expect(redis.cliCluster(redis.ports[0], 'EXISTS', `ek:${pushed.tableId}:{${pushed.tableId.slice(0, 8)}.${page % pushed.buckets}}:${page}`).trim()).toBe('1');
    expect(redis.cliCluster(redis.ports[0], 'EXISTS', `ek:{${pushed.tableId.slice(0, 16)}.${page % pushed.buckets}}:${page}`).trim()).toBe('0');
    // A plain resume keeps the table's format (and finds every page there).
    const again = (await pushCheckpoint(file, { url: redis.url }, { pageRows: 8 }))[0];
    expect([again.pageKeys, again.sent]).toEqual([1, 0]);
    await expect(pushCheckpoint(file, { url: redis.url }, { pageRows: 8, pageKeys: 2 })).rejects.toThrow(/its page keys are in format 1, not 2/);
    // The same through `engram store push --page-keys`.
    const cli = (...args: string[]) =>
      spawnSync(process.execPath, ['--import', 'tsx', path.join(__dirname, '../../src/cli/main.ts'), 'store', 'push', file, '--url', redis.url, '--page-rows', '8', ...args], { encoding: 'utf8' });
    const refused = cli('--page-keys', '2');
    expect(refused.status).toBe(1);
    expect(refused.stderr).toMatch(/its page keys are in format 1, not 2/);
    const resumed = cli('--page-keys', '1', '--json');
    expect(resumed.status, resumed.stderr).toBe(0);
    expect((JSON.parse(resumed.stdout) as Array<{ sent: number; pageKeys: number }>).map((r) => [r.pageKeys, r.sent])).toEqual([[1, 0]]);
    const mem = Engram.fromSafetensors(file);
    const remote = Engram.fromSafetensors(file, { table: { tier: 'remote', url: redis.url, cacheBytes: Math.floor((mem.table.rows * mem.table.rowBytes) / 3), pageRows: 8 } });
    await remote.remoteReady();
    for (let b = 0; b < 3; b++) {
      const { ids, hidden } = paperBatch(2, 16);
      expect(same((await remote.forwardAsync(hidden, ids, [2, 16])).output, mem.forward(hidden, ids, [2, 16]).output)).toBe(true);
    }
    await remote.close();
  });

  it('a manifest for another checkpoint is refused before any forward', async () => {
    const a = paperLayer('bf16', 'mine');
    await pushCheckpoint(a, { url: redis.url }, { pageRows: 8 });
    // Same tensor name and geometry, other weights (another seed): another checkpoint.
    const b = path.join(root, 'other.safetensors');
    new Engram({ engramVocabSize: [20_011, 20_011], hiddenSize: 32, nEmbedPerNgram: 64 }, { seed: 99, tableDtype: 'bf16' }).saveSafetensors(b);
    const remote = Engram.fromSafetensors(b, { table: { tier: 'remote', url: redis.url, cacheBytes: 1 << 20, pageRows: 8 } });
    await expect(remote.remoteReady()).rejects.toThrow(/holds no table .* push it first/);
    await remote.close();
    const wrongPages = Engram.fromSafetensors(a, { table: { tier: 'remote', url: redis.url, cacheBytes: 1 << 20, pageRows: 16 } });
    await expect(wrongPages.remoteReady()).rejects.toThrow(/does not match this layer's table: its pages hold 8 rows, this pager's 16 \(pass pageRows: 8\)/);
    await wrongPages.close();
  });

  it('a master killed mid-run: the client follows the failover to its replica and every batch keeps the in-memory bits', async () => {
    const file = paperLayer('bf16', 'failover');
    await pushCheckpoint(file, { url: redis.url }, { pageRows: 8 });
    const mem = Engram.fromSafetensors(file);
    // Direct eviction: every batch reads its pages from the store again.
    const remote = Engram.fromSafetensors(file, { table: { tier: 'remote', url: redis.url, cacheBytes: mem.table.rows * 128, pageRows: 8, eviction: 'direct', timeoutMs: 15_000 } });
    await remote.remoteReady();
    const masters = redis.ports.filter((p) => /role:master/.test(redis.cli(p, 'INFO', 'replication')));
    const victim = masters.find((p) => p !== redis.ports[0])!;
    let afterFailover = { directMgets: 0, clientMgets: 0 };
    for (let b = 0; b < 10; b++) {
      if (b === 3) redis.kill(victim);
      const { ids, hidden } = paperBatch(2, 32);
      const got = (await remote.forwardAsync(hidden, ids, [2, 32])).output;
      expect(same(got, mem.forward(hidden, ids, [2, 32]).output)).toBe(true);
      if (b === 7) afterFailover = { ...remote.pager!.remoteStats()! };
    }
    // The dead master's reads were handed to the cluster client, which found the promoted
    // replica; the direct connections then read from it as from any master.
    const stats = remote.pager!.remoteStats()!;
    expect(afterFailover.clientMgets).toBeGreaterThan(0);
    expect(stats.directMgets).toBeGreaterThan(afterFailover.directMgets);
    expect(stats.clientMgets).toBe(afterFailover.clientMgets);
    await remote.close();
    await redis.restart(victim); // back as a replica, for the tests after
  }, 120_000);

  it('a slot with no reachable node (a master and its replica killed): the batch fails naming the slot and node; once they are back, the next batch gives the in-memory bits', async () => {
    const file = paperLayer('bf16', 'slot-down');
    await pushCheckpoint(file, { url: redis.url }, { pageRows: 8 });
    const mem = Engram.fromSafetensors(file);
    const remote = Engram.fromSafetensors(file, { table: { tier: 'remote', url: redis.url, cacheBytes: 1 << 22, pageRows: 8, eviction: 'direct', timeoutMs: 2000 } });
    await remote.remoteReady();
    const master = redis.ports.find((p) => p !== redis.ports[0] && /role:master/.test(redis.cli(p, 'INFO', 'replication')))!;
    const replica = redis.replicaOf(master);
    redis.kill(master);
    redis.kill(replica);
    const { ids, hidden } = paperBatch(2, 64);
    const t0 = performance.now();
    await expect(remote.forwardAsync(hidden, ids, [2, 64])).rejects.toThrow(/remote tier: reading page \d+ \('ek:\{[0-9a-f]{16}\.\d+\}:\d+', slot \d+ on [^)]+\) failed: .*\(retried for 2000 ms\)/);
    expect(performance.now() - t0).toBeLessThan(6000);
    expect(remote.pager!.stats().ticketsInFlight).toBe(0);
    await redis.restart(master);
    await redis.restart(replica);
    await redis.waitHealthy();
    expect(same((await remote.forwardAsync(hidden, ids, [2, 64])).output, mem.forward(hidden, ids, [2, 64]).output)).toBe(true);
    await remote.close();
  }, 120_000);

  it('the whole cluster stopped: the batch fails within the timeout with an error naming the slot and node; nothing partial is cached', async () => {
    const file = paperLayer('bf16', 'down');
    await pushCheckpoint(file, { url: redis.url }, { pageRows: 8 });
    const remote = Engram.fromSafetensors(file, { table: { tier: 'remote', url: redis.url, cacheBytes: 1 << 22, pageRows: 8, timeoutMs: 1500 } });
    await remote.remoteReady();
    redis.killAll();
    const { ids, hidden } = paperBatch(1, 16);
    const t0 = performance.now();
    await expect(remote.forwardAsync(hidden, ids, [1, 16])).rejects.toThrow(/remote tier: reading .*(slot \d+ on 127\.0\.0\.1:\d+|took over 1500 ms)/);
    expect(performance.now() - t0).toBeLessThan(5000);
    expect(remote.pager!.stats().ticketsInFlight).toBe(0);
    await remote.close();
  }, 60_000);
});

describe('the remote tier on single servers: AUTH and TLS', () => {
  it('a wrong password is a clear error before any forward, with no credential in it; the right one works', async () => {
    const redis = await startRedis({ cluster: false, password: 'right-horse-battery' });
    try {
      const file = paperLayer('bf16', 'auth');
      await expect(pushCheckpoint(file, { url: redis.url, password: 'wrong-staple' })).rejects.toThrow(/authentication to 127\.0\.0\.1:\d+ failed/);
      const err = await pushCheckpoint(file, { url: redis.url.replace('redis://', 'redis://default:wrong-staple@') }).catch((e: Error) => e);
      expect(String(err)).toMatch(/authentication .* failed/);
      expect(String(err)).not.toMatch(/wrong-staple|right-horse/);
      await pushCheckpoint(file, { url: redis.url, password: 'right-horse-battery' }, { pageRows: 8 });
      const bad = Engram.fromSafetensors(file, { table: { tier: 'remote', url: redis.url, password: 'nope-nope', cacheBytes: 1 << 20, pageRows: 8 } });
      const e2 = await bad.remoteReady().catch((e: Error) => e);
      expect(String(e2)).toMatch(/authentication .* failed/);
      expect(String(e2)).not.toMatch(/nope-nope/);
      await bad.close();
      const good = Engram.fromSafetensors(file, { table: { tier: 'remote', url: redis.url, password: 'right-horse-battery', cacheBytes: 1 << 20, pageRows: 8 } });
      await good.remoteReady();
      const { ids, hidden } = paperBatch(1, 32);
      const want = Engram.fromSafetensors(file).forward(hidden, ids, [1, 32]).output;
      expect(same((await good.forwardAsync(hidden, ids, [1, 32])).output, want)).toBe(true);
      await good.close();
      // An ACL user that may only read the table's keys: the tier needs no more.
      redis.cli(redis.ports[0], 'ACL', 'SETUSER', 'engram-reader', 'on', '>reader-pass', '~ek:*', '+get', '+mget', '+info', '+ping', '+hello', '+cluster|slots', '+cluster|shards', '+command');
      const reader = Engram.fromSafetensors(file, { table: { tier: 'remote', url: redis.url, username: 'engram-reader', password: 'reader-pass', cacheBytes: 1 << 20, pageRows: 8 } });
      await reader.remoteReady();
      expect(same((await reader.forwardAsync(hidden, ids, [1, 32])).output, want)).toBe(true);
      // The direct connections authenticate as that user too.
      expect(reader.pager!.remoteStats()!.directMgets).toBeGreaterThan(0);
      expect(reader.pager!.remoteStats()!.clientMgets).toBe(0);
      await reader.close();
      // The same user cannot push (no SET): refused by the server, said clearly.
      await expect(pushCheckpoint(file, { url: redis.url, username: 'engram-reader', password: 'reader-pass' }, { pageRows: 8 })).rejects.toThrow(/NOPERM|no permissions/i);
    } finally {
      await redis.stop();
    }
  }, 60_000);

  it('TLS (rediss://) with a CA made for the test works; without the CA, or over plain redis://, it is a clear error', async () => {
    const tls = makeTlsFiles();
    const redis = await startRedis({ cluster: false, tls });
    try {
      const file = paperLayer('f32', 'tls');
      await expect(pushCheckpoint(file, { url: redis.url, timeoutMs: 3000 })).rejects.toThrow(/TLS handshake .* failed|certificate/);
      await expect(pushCheckpoint(file, { url: redis.url.replace('rediss://', 'redis://'), timeoutMs: 3000 })).rejects.toThrow(/remote tier: /);
      await pushCheckpoint(file, { url: redis.url, tls: { ca: fs.readFileSync(tls.ca) } }, { pageRows: 8 });
      const remote = Engram.fromSafetensors(file, { table: { tier: 'remote', url: redis.url, tls: { ca: fs.readFileSync(tls.ca) }, cacheBytes: 1 << 21, pageRows: 8 } });
      await remote.remoteReady();
      const { ids, hidden } = paperBatch(1, 32);
      expect(same((await remote.forwardAsync(hidden, ids, [1, 32])).output, Engram.fromSafetensors(file).forward(hidden, ids, [1, 32]).output)).toBe(true);
      // The direct connections speak TLS with the same settings.
      expect(remote.pager!.remoteStats()!.directMgets).toBeGreaterThan(0);
      expect(remote.pager!.remoteStats()!.clientMgets).toBe(0);
      await remote.close();
    } finally {
      await redis.stop();
      fs.rmSync(tls.dir, { recursive: true, force: true });
    }
  }, 60_000);
});
