// The remote tier behind a pager: the pager's copy jobs (pages to fetch, and the cache
// rows they go to) are read from the store in one batch per job, every page checked
// (header and CRC32C) before any of the job's rows are written to the cache. A job fails
// as a whole: its ticket's wait throws, and nothing of it is ever read as table rows.
import { native } from '../../native/index.js';
import type { NativePagerHandle } from '../../native/pager.js';
import { decodePage, tableTagBytes } from './page-format.js';
import { manifestMismatch, tableId, type RemoteManifest, type TableIdentity } from './identity.js';
import { RemoteStore, withTimeout, type RemoteStoreOptions } from './store.js';

/** What a remote-tier layer reads: the store and the table's identity in it. */
export class RemoteTable {
  constructor(
    readonly store: RemoteStoreOptions,
    readonly identity: TableIdentity,
  ) {}

  get dtype() {
    return this.identity.dtype;
  }

  get rows() {
    return this.identity.rows;
  }

  get cols() {
    return this.identity.cols;
  }

  get tableId(): string {
    return tableId(this.identity);
  }
}

export interface RemoteStats {
  /** Jobs fetched (one per prefetch that missed pages), pages and bytes read from the store. */
  jobs: number;
  pages: number;
  bytes: number;
  failedJobs: number;
  /** Seconds from a job's submission to its rows in the cache, the most recent jobs (up to 10,000). */
  jobSeconds: number[];
  /** The pages each of those jobs read (0 for a failed one). */
  jobPages: number[];
  /**
   * The MGETs (one per hash-tag group a job touched) answered by the direct connections,
   * and those read through the cluster client: all of them with directReads false, else
   * the ones handed to it (a redirection after a failover, a node that failed).
   */
  directMgets: number;
  clientMgets: number;
}

interface Geometry {
  pageRows: number;
  rowBytes: number;
  scaleRowBytes: number;
  rows: number;
}

export class RemotePageSource {
  readonly tableId: string;
  private readonly tagBytes: Uint8Array;
  /** Resolves once the store is connected and holds this table; rejects with why not. */
  readonly ready: Promise<void>;
  private store: RemoteStore | undefined;
  private keyOf: (page: number) => string = () => ''; // set by connect() from the manifest; every job awaits it
  private closed = false;
  readonly stats: RemoteStats = { jobs: 0, pages: 0, bytes: 0, failedJobs: 0, jobSeconds: [], jobPages: [], directMgets: 0, clientMgets: 0 };

  constructor(
    readonly table: RemoteTable,
    private readonly g: Geometry,
  ) {
    this.tableId = table.tableId;
    this.tagBytes = tableTagBytes(this.tableId);
    this.ready = this.connect();
    this.ready.catch(() => undefined); // awaited by every job and by remoteReady(); never unhandled
  }

  private async connect(): Promise<void> {
    const store = await RemoteStore.connect(this.table.store);
    if (this.closed) {
      await store.close();
      throw new Error('remote tier: the pager was closed');
    }
    this.store = store;
    const key = store.manifestKey(this.tableId);
    const raw = await withTimeout(store.get(key), store.timeoutMs, () => new Error(`remote tier: reading the manifest '${key}' (${store.whereIs(key)}) took over ${store.timeoutMs} ms`));
    if (raw === null) throw new Error(`remote tier: ${store.endpoint} holds no table '${this.tableId}' (tensor '${this.table.identity.tensor}'): push it first with \`engram store push\``);
    let manifest: RemoteManifest;
    try {
      manifest = JSON.parse(raw.toString('utf8')) as RemoteManifest;
    } catch {
      throw new Error(`remote tier: the manifest '${key}' is not JSON`);
    }
    const why = manifestMismatch(manifest, this.table.identity, this.g.pageRows);
    if (why !== undefined) throw new Error(`remote tier: the manifest '${key}' does not match this layer's table: ${why}`);
    this.keyOf = store.pageKeys(this.tableId, manifest.buckets, manifest.pageKeys ?? 1);
  }

  private pageRowsOf(page: number): number {
    return Math.min(this.g.pageRows, this.g.rows - page * this.g.pageRows);
  }

  /** Starts fetching every job the pager submitted since the last call. */
  pump(handle: NativePagerHandle): void {
    for (const { job, copies } of native().pagerRemoteJobs(handle)) void this.runJob(handle, job, copies);
  }

  private async runJob(handle: NativePagerHandle, job: number, copies: Float64Array): Promise<void> {
    const t0 = performance.now();
    let failure = '';
    let pagesRead = 0;
    try {
      await this.ready;
      const store = this.store;
      if (store === undefined) throw new Error('remote tier: the pager was closed');
      const { pageRows, rowBytes, scaleRowBytes } = this.g;
      const pages: number[] = [];
      const seen = new Set<number>();
      for (let c = 0; c < copies.length; c += 3) {
        const src = copies[c];
        const last = Math.floor((src + copies[c + 2] - 1) / pageRows);
        for (let p = Math.floor(src / pageRows); p <= last; p++) {
          if (!seen.has(p)) {
            seen.add(p);
            pages.push(p);
          }
        }
      }
      const keys = pages.map(this.keyOf);
      let values: Array<Buffer | null>;
      try {
        values = await store.getManyRetrying(keys, (i) => `page ${pages[i]}`);
      } finally {
        this.stats.directMgets = store.readStats.directMgets;
        this.stats.clientMgets = store.readStats.clientMgets;
      }
      // One native call checks every page (header, CRC32C) before any of the job's rows is
      // written, then copies the rows (and scales) from the values into the cache.
      const result = native().pagerRemoteFillPages(handle, { job, pages: Float64Array.from(pages), values, tableTag: this.tagBytes });
      if (result >= 0) {
        const p = pages[result];
        const rows = this.pageRowsOf(p);
        // decodePage names what is wrong with the value.
        decodePage(values[result], keys[result], this.tableId, p, rows, rows * (rowBytes + scaleRowBytes));
        throw new Error(`remote tier: the value of '${keys[result]}' (page ${p}) failed the native page check; the page was not used`);
      }
      const written = result === -1;
      let bytes = 0;
      for (const v of values) bytes += v!.byteLength;
      if (!written) return; // abandoned: its ticket has moved on
      this.stats.pages += pages.length;
      pagesRead = pages.length;
      this.stats.bytes += bytes;
    } catch (e) {
      failure = e instanceof Error ? e.message : String(e);
      if (this.store !== undefined) failure = this.store.scrub(failure);
      this.stats.failedJobs++;
    }
    const seconds = (performance.now() - t0) / 1000;
    this.stats.jobs++;
    if (this.stats.jobSeconds.length >= 10_000) {
      this.stats.jobSeconds.shift();
      this.stats.jobPages.shift();
    }
    this.stats.jobSeconds.push(seconds);
    this.stats.jobPages.push(pagesRead);
    try {
      native().pagerRemoteComplete(handle, job, failure, seconds);
    } catch {
      // Only a bad handle could throw here; a fetch runs detached, so nothing may escape it.
    }
  }

  /** Closes the connection (the process can then exit); later fetches fail. */
  async close(): Promise<void> {
    this.closed = true;
    const s = this.store;
    this.store = undefined;
    await s?.close();
  }
}
