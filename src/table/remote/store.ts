// The remote tier's store: a Redis Cluster (or one Redis server) reached with ioredis.
// ioredis was chosen over node-redis for two things this tier leans on: its cluster
// client follows a failover by itself (MOVED/ASK redirections, slot-map refreshes,
// retries while a replica is promoted, all with documented knobs), and with
// enableAutoPipelining the reads a batch issues together leave as one pipeline per node
// whatever slots their keys hash to. Page keys carry a hash tag per group of pages (see
// pageKey): a batch reads each group with one MGET, and the groups spread over the nodes.
import { createRequire } from 'node:module';

import type { Cluster, ClusterOptions, Redis, RedisOptions } from 'ioredis';

import { describe, requireInteger } from '../../core/validate.js';
import { DirectReads } from './direct-reads.js';
import { PAGE_KEY_FORMAT, type PageKeyFormat } from './identity.js';

export interface RemoteStoreOptions {
  /** `redis://host:port` or `rediss://host:port` (TLS); several seeds of a cluster as an array. Credentials in the URL are accepted. */
  url: string | readonly string[];
  /** ACL user (default: the URL's, else `default`). */
  username?: string;
  /** AUTH password (default: the URL's). Never printed. */
  password?: string;
  /** TLS settings (implied by `rediss://`): a CA for a self-signed server certificate, client certificates, SNI name. */
  tls?: boolean | { ca?: string | Buffer; cert?: string | Buffer; key?: string | Buffer; servername?: string; rejectUnauthorized?: boolean };
  /**
   * The most a read of one batch's pages may take, retries and failover included (ms,
   * default 5000): past it the batch's ticket fails naming the key's slot and node.
   */
  timeoutMs?: number;
  /** Key prefix (default `ek`). */
  keyPrefix?: string;
  /**
   * Page reads over the store's own connections, one per node (default true): half the
   * time of a fetch of many small pages. Whatever they cannot answer (a redirection, a
   * failed node) is read through the cluster client, which follows failovers; false reads
   * everything through it.
   */
  directReads?: boolean;
}

interface Seed {
  host: string;
  port: number;
  tls: boolean;
  username?: string;
  password?: string;
}

function parseUrl(url: unknown, name: string): Seed {
  if (typeof url !== 'string') throw new TypeError(`${name} must be a redis:// or rediss:// URL, got ${describe(url)}`);
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new TypeError(`${name} is not a URL (expected redis://host:port or rediss://host:port)`);
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') throw new TypeError(`${name} must use redis:// or rediss://, got ${u.protocol}//`);
  const port = u.port === '' ? 6379 : Number(u.port);
  return {
    host: u.hostname.replace(/^\[|\]$/g, ''),
    port,
    tls: u.protocol === 'rediss:',
    username: u.username === '' ? undefined : decodeURIComponent(u.username),
    password: u.password === '' ? undefined : decodeURIComponent(u.password),
  };
}

/** An Error whose message never holds a credential (ioredis errors can quote the URL or AUTH arguments). */
function scrubbed(message: string, secrets: ReadonlyArray<string | undefined>): string {
  let out = message;
  for (const s of secrets) if (s) out = out.split(s).join('***');
  return out;
}

// ioredis and cluster-key-slot are loaded on the first connection: importing the library
// does not load a Redis client nobody asked for.
const requireLazily = createRequire(import.meta.url);
const ioredis = () => requireLazily('ioredis') as typeof import('ioredis');
const calculateSlot = (key: string) => (requireLazily('cluster-key-slot') as (key: string) => number)(key);

/**
 * A name shared by keys of one slot: the hash tag when the key has one (Redis hashes only
 * it, and reading it costs far less than a CRC16 per key), else the slot number.
 */
function slotGroup(key: string): string {
  const open = key.indexOf('{');
  if (open >= 0) {
    const close = key.indexOf('}', open + 1);
    if (close > open + 1) return key.slice(open + 1, close);
  }
  return `#${calculateSlot(key)}`;
}

export class RemoteStore {
  private constructor(
    private readonly client: Redis | Cluster,
    readonly cluster: boolean,
    readonly timeoutMs: number,
    readonly keyPrefix: string,
    private readonly secrets: ReadonlyArray<string | undefined>,
    /** host:port of the seed, for errors. */
    readonly endpoint: string,
    /** The fast path for page reads (undefined: off). */
    private readonly direct: DirectReads | undefined,
  ) {}

  /** MGETs of page reads answered by the direct connections, and those read through the client. */
  readonly readStats = { directMgets: 0, clientMgets: 0 };
  private readonly slotOfTag = new Map<string, number>();

  /**
   * Connects and authenticates (a clear error, with no credential in it, for a refused
   * password, a TLS mismatch or an unreachable server), and finds out whether the server
   * is a cluster node: a cluster is then used through all its nodes.
   */
  static async connect(options: RemoteStoreOptions): Promise<RemoteStore> {
    if (options === null || typeof options !== 'object') throw new TypeError(`options must be { url, ... }, got ${describe(options)}`);
    const urls = Array.isArray(options.url) ? options.url : [options.url];
    if (urls.length === 0) throw new TypeError('options.url must name at least one server');
    const seeds = urls.map((u, i) => parseUrl(u, urls.length === 1 ? 'options.url' : `options.url[${i}]`));
    const timeoutMs = requireInteger('options.timeoutMs', options.timeoutMs ?? 5000, 1, 3_600_000);
    const keyPrefix = options.keyPrefix ?? 'ek';
    if (typeof keyPrefix !== 'string' || keyPrefix.length === 0 || /[\s{}]/.test(keyPrefix)) throw new TypeError(`options.keyPrefix must be a non-empty string without spaces or braces, got ${describe(keyPrefix)}`);
    const username = options.username ?? seeds[0].username;
    const password = options.password ?? seeds[0].password;
    const secrets = [password, seeds[0].password];
    const wantTls = options.tls !== undefined && options.tls !== false ? true : seeds[0].tls;
    const tls = wantTls ? { ...(typeof options.tls === 'object' ? options.tls : {}) } : undefined;
    const endpoint = `${seeds[0].host}:${seeds[0].port}`;
    if (options.directReads !== undefined && typeof options.directReads !== 'boolean') throw new TypeError(`options.directReads must be a boolean, got ${describe(options.directReads)}`);
    // A reply slower than this drops the direct connection; its reads go through the client
    // for the time left of timeoutMs.
    const direct = () => (options.directReads === false ? undefined : new DirectReads({ username, password, tls, replyTimeoutMs: Math.max(1, Math.min(1000, Math.floor(timeoutMs / 2))) }));
    const common: RedisOptions = {
      username,
      password,
      tls,
      connectTimeout: timeoutMs,
      commandTimeout: timeoutMs,
      enableAutoPipelining: true,
      // A lost connection is retried every 0.5 s at most for as long as the store is open,
      // so a node back after an outage of any length serves the next batch (a strategy that
      // gave up after 20 tries, about 8 s, left such a node unused: seen as a flaky test).
      // Commands meanwhile fail after maxRetriesPerRequest reconnects or timeoutMs: they
      // never wait for the node.
      retryStrategy: (times) => Math.min(50 * times, 500),
      maxRetriesPerRequest: 2,
    };
    const fail = (e: unknown, what: string) => {
      const msg = scrubbed(e instanceof Error ? e.message : String(e), secrets);
      if (/WRONGPASS|NOAUTH|invalid password|AUTH/i.test(msg)) return new Error(`remote tier: authentication to ${endpoint} failed (${msg}): check the username and password`);
      if (/certificate|SSL|TLS|EPROTO|wrong version/i.test(msg) || (wantTls && /ECONNRESET|socket hang up/i.test(msg))) {
        return new Error(`remote tier: the TLS handshake with ${endpoint} failed (${msg}): check rediss:// and the tls options (a self-signed server needs tls.ca)`);
      }
      return new Error(`remote tier: ${what} ${endpoint} failed: ${msg}`);
    };
    // First one server, to authenticate and learn whether it is a cluster node.
    const { Redis, Cluster } = ioredis();
    const probe = new Redis({ ...common, host: seeds[0].host, port: seeds[0].port, lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 });
    // The connection's own error (a refused password, a TLS alert) says more than the
    // "Connection is closed." the connect promise then rejects with.
    let cause: unknown;
    probe.on('error', (e: unknown) => (cause ??= e));
    let clustered = false;
    try {
      await withTimeout(probe.connect(), timeoutMs, () => new Error(`remote tier: cannot connect to ${endpoint} within ${timeoutMs} ms`));
      const info = (await probe.info('cluster')) as string;
      clustered = /cluster_enabled:1/.test(info);
    } catch (e) {
      probe.disconnect();
      if (e instanceof Error && e.message.startsWith('remote tier:') && cause === undefined) throw e;
      throw fail(cause ?? e, 'connecting to');
    }
    if (!clustered) return new RemoteStore(probe, false, timeoutMs, keyPrefix, secrets, endpoint, direct());
    probe.disconnect();
    const clusterOptions: ClusterOptions = {
      redisOptions: common,
      enableAutoPipelining: true,
      scaleReads: 'master',
      // A killed master: retried while its replica is promoted (bounded by timeoutMs per batch).
      retryDelayOnFailover: 100,
      retryDelayOnClusterDown: 100,
      retryDelayOnTryAgain: 100,
      maxRedirections: 16,
      slotsRefreshTimeout: Math.min(timeoutMs, 2000),
      clusterRetryStrategy: (times) => (times > 20 ? null : Math.min(100 * times, 1000)),
      dnsLookup: (address, callback) => callback(null, address),
    };
    const cluster = new Cluster(seeds.map((s) => ({ host: s.host, port: s.port })), clusterOptions);
    cluster.on('error', () => undefined); // errors reach the commands that meet them
    try {
      await withTimeout(
        new Promise<void>((resolve, reject) => {
          cluster.once('ready', () => resolve());
          cluster.once('end', () => reject(new Error('the cluster connection ended')));
        }),
        timeoutMs,
        () => new Error(`remote tier: the cluster behind ${endpoint} was not ready within ${timeoutMs} ms`),
      );
    } catch (e) {
      cluster.disconnect();
      throw e instanceof Error && e.message.startsWith('remote tier:') ? e : fail(e, 'connecting to the cluster at');
    }
    return new RemoteStore(cluster, true, timeoutMs, keyPrefix, secrets, endpoint, direct());
  }

  /**
   * The key of page `page` of a table stored in `buckets` hash-tag groups: pages of one
   * group share a slot, so a batch reads each group it touches with one MGET (per-command
   * cost, not bytes, bounds a client's rate on small pages); the groups spread over the
   * slots, and so over the nodes. `format`: the table manifest's `pageKeys` (1 when absent).
   */
  pageKey(tableId: string, page: number, buckets: number, format: PageKeyFormat = PAGE_KEY_FORMAT): string {
    return this.pageKeys(tableId, buckets, format)(page);
  }

  /** pageKey for many pages of one table: the part of the key they share is built once. */
  pageKeys(tableId: string, buckets: number, format: PageKeyFormat = PAGE_KEY_FORMAT): (page: number) => string {
    const head = format === 1 ? `${this.keyPrefix}:${tableId}:{${tableId.slice(0, 8)}.` : `${this.keyPrefix}:{${tableId.slice(0, 16)}.`;
    return (page) => `${head}${page % buckets}}:${page}`;
  }

  manifestKey(tableId: string): string {
    return `${this.keyPrefix}:${tableId}:manifest`;
  }

  /** The `host:port` of the master serving `key`'s slot (the seed for one server), as the client last learnt it. */
  private masterOf(key: string): string | undefined {
    if (!this.cluster) return this.endpoint;
    const tag = slotGroup(key);
    let slot = this.slotOfTag.get(tag);
    if (slot === undefined) {
      slot = calculateSlot(key);
      if (this.slotOfTag.size >= 65_536) this.slotOfTag.clear();
      this.slotOfTag.set(tag, slot);
    }
    return ((this.client as Cluster).slots[slot] as string[] | undefined)?.[0];
  }

  /** Where `key` lives, for errors: "slot 1234 on 127.0.0.1:7001". */
  whereIs(key: string): string {
    if (!this.cluster) return `on ${this.endpoint}`;
    const slot = calculateSlot(key);
    const nodes = (this.client as Cluster).slots[slot] as string[] | undefined;
    return `slot ${slot} on ${nodes?.[0] ?? 'no reachable node'}`;
  }

  /** An error message with any credential taken out. */
  scrub(message: string): string {
    return scrubbed(message, this.secrets);
  }

  async get(key: string): Promise<Buffer | null> {
    return this.client.getBuffer(key);
  }

  /** The values of `keys`, read together (one pipeline per node); null for a missing key. */
  async getMany(keys: readonly string[]): Promise<Array<Buffer | null>> {
    return Promise.all(keys.map((k) => this.client.getBuffer(k)));
  }

  /**
   * getMany through faults: the reads that fail (a node's connection closed as it died, a
   * cluster still promoting a replica) are tried again, with backoff, until timeoutMs has
   * passed since the call; then an Error naming the first key still unread, its slot and
   * node, and the last failure. `what(i)` names key i for that error.
   */
  async getManyRetrying(keys: readonly string[], what: (i: number) => string): Promise<Array<Buffer | null>> {
    const deadline = performance.now() + this.timeoutMs;
    const values = new Array<Buffer | null>(keys.length).fill(null);
    // Keys of one slot go in one MGET (a cluster refuses MGET across slots); one server: all together.
    const groups = new Map<string, number[]>();
    keys.forEach((k, i) => {
      const slot = this.cluster ? slotGroup(k) : '';
      const g = groups.get(slot);
      if (g === undefined) groups.set(slot, [i]);
      else g.push(i);
    });
    let todo = [...groups.values()];
    let lastError: unknown;
    let timedOut = false;
    const work = (async () => {
      if (this.direct !== undefined) {
        const asked = todo.length;
        todo = await this.direct.read(keys, todo, (g) => this.masterOf(keys[g[0]]), values);
        this.readStats.directMgets += asked - todo.length;
      }
      for (let attempt = 0; todo.length > 0; attempt++) {
        this.readStats.clientMgets += todo.length;
        const settled = await Promise.allSettled(todo.map((g) => this.client.mgetBuffer(...g.map((i) => keys[i]))));
        const failed: number[][] = [];
        settled.forEach((r, j) => {
          if (r.status === 'fulfilled') todo[j].forEach((i, n) => (values[i] = r.value[n]));
          else {
            failed.push(todo[j]);
            lastError = r.reason;
          }
        });
        todo = failed;
        if (todo.length === 0 || timedOut) return;
        const delay = Math.min(50 * 2 ** attempt, 500);
        if (performance.now() + delay >= deadline) return;
        await new Promise((r) => setTimeout(r, delay));
      }
    })();
    try {
      await withTimeout(work, Math.max(1, deadline - performance.now()), () => new Error('timed out'));
    } catch {
      timedOut = true; // the loop stops at its next turn
    }
    if (todo.length > 0) {
      const i = todo[0][0];
      const unread = todo.reduce((n, g) => n + g.length, 0);
      const why = lastError === undefined ? `no answer within ${this.timeoutMs} ms` : `${this.scrub(lastError instanceof Error ? lastError.message : String(lastError))} (retried for ${this.timeoutMs} ms)`;
      throw new Error(`remote tier: reading ${what(i)} ('${keys[i]}', ${this.whereIs(keys[i])}) failed: ${why}${unread > 1 ? `; ${unread - 1} more page(s) unread` : ''}`);
    }
    return values;
  }

  /** Sets key-value pairs, one MSET per slot. */
  async setManyGrouped(entries: ReadonlyArray<readonly [string, Buffer]>): Promise<void> {
    const groups = new Map<string, Array<string | Buffer>>();
    for (const [k, v] of entries) {
      const slot = this.cluster ? slotGroup(k) : '';
      const g = groups.get(slot);
      if (g === undefined) groups.set(slot, [k, v]);
      else g.push(k, v);
    }
    await Promise.all([...groups.values()].map((g) => this.client.mset(...g)));
  }

  /** The first `bytes` bytes of each value (GETRANGE), or null for a missing key. */
  async headers(keys: readonly string[], bytes: number): Promise<Array<Buffer | null>> {
    return Promise.all(keys.map(async (k) => {
      const v = await this.client.getrangeBuffer(k, 0, bytes - 1);
      return v.byteLength === 0 ? null : v;
    }));
  }

  async setMany(entries: ReadonlyArray<readonly [string, Buffer | string]>): Promise<void> {
    await Promise.all(entries.map(([k, v]) => this.client.set(k, v)));
  }

  async close(): Promise<void> {
    this.direct?.close();
    try {
      await this.client.quit();
    } catch {
      this.client.disconnect();
    }
  }
}

/** `p`, or the error `onTimeout()` makes once `ms` have passed. */
export async function withTimeout<T>(p: Promise<T>, ms: number, onTimeout: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(onTimeout()), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}
