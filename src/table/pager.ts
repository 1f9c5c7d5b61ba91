// A pager for Engram tables bigger than the fast tier: the table lives in its home tier
// (RAM, or a file read page by page) and a cache of page slots (plus optional hot rows,
// resident for good) holds what the next batches need. Row ids are known before the
// layer runs, so `prefetch` starts the copies early and the gather waits only on them.
// The bookkeeping is native (native/pager/pager.cpp) and shared by every backend.
import fs from 'node:fs';
import os from 'node:os';

import { MappedFile } from '../core/mapped-file.js';
import { native, TABLE_DTYPE_CODES, type NativePagerHandle, type NativePagerStats, type NativeTableSource } from '../native/index.js';
import { bytesPerElement, EngramTable, requireTableDtype, SCALE_BLOCK, type TableDtype } from './table.js';
import { describe, isOwnKey, requireInteger } from '../core/validate.js';
import { RemotePageSource, RemoteTable, type RemoteStats } from './remote/remote-source.js';

export type Eviction = 'lru' | 'lfu' | 'direct';
const EVICTION_CODES: Record<Eviction, number> = { lru: 0, lfu: 1, direct: 2 };

/**
 * Pages of the remote tier's store default to about this many bytes (rows and their
 * scales): one key per row would cost the store more than the rows. The other tiers
 * default to one-row pages (see PagerOptions.pageRows).
 */
export const DEFAULT_PAGE_BYTES = 64 * 1024;

export interface PagerOptions {
  /** Bytes of the fast tier: page slots plus hot rows. */
  cacheBytes: number;
  /**
   * Rows per page. Default: 1 for tables in memory or in a file, since hashed ids scatter
   * and a larger page mostly brings rows no lookup wants (bench:pager: one-row pages hit
   * 19-65% at 1-50% of the table cached and copy 1.6 KB a token, 64 KiB pages 3-56% and
   * about 1 MB); the remote tier: as many as fit in 64 KiB, as `engram store push` stores
   * them. Bookkeeping costs about 12 bytes a slot beside the cache (LFU about 20, with
   * its count sketch).
   */
  pageRows?: number;
  /** Bytes per page instead of pageRows: must be a whole number of rows (with their scales). */
  pageBytes?: number;
  /**
   * 'lru' (default) or 'lfu' (fewest lookups since creation first; ties: least recently
   * used); 'direct': no reuse across batches, every batch copies exactly the pages it
   * needs (the paper's uncached configuration, with pageRows 1 for single rows).
   */
  eviction?: Eviction;
  /** Rows of the cache set aside for hot-row residency (see setHotRows). Default 0. */
  hotRows?: number;
  /** Cap on the copy rate in GB/s (10^9 bytes/s), to emulate a PCIe link. Default: none. */
  bandwidthGBps?: number;
  /**
   * Threads reading the pages of one prefetch at once (CPU backend). Default: 4 for a
   * file (a disk serves several reads in parallel), 1 for a table in memory. A file is
   * read through io_uring where Linux allows it (one thread, 128 reads in flight); these
   * threads serve the pread fallback (ENGRAM_FILE_READS=pread forces it).
   */
  readThreads?: number;
  /** Count hits and misses only: no memory is allocated and nothing is copied. */
  simulate?: boolean;
  /**
   * 'cuda': the cache lives in device memory and pages arrive on a copy stream, from the
   * table pinned in place in RAM, or read from its file into pinned staging. Default 'cpu'.
   */
  device?: 'cpu' | 'cuda';
  deviceIndex?: number;
}

/** A table stored in a file: a raw table file or a tensor inside a safetensors file. */
export interface TableFile {
  path: string;
  dtype: TableDtype;
  rows: number;
  cols: number;
  /** Byte offset of row 0 in the file. */
  dataOffset: number;
  /** fp8: byte offset of the UE8M0 scales [rows, cols/32]. */
  scalesOffset?: number;
}

export interface PagerStats extends NativePagerStats {
  /** rowHits / lookups (hot-row hits included). */
  rowHitRate: number;
  /** pageHits / uniquePages. */
  pageHitRate: number;
}

/**
 * Native bookkeeping per page slot, at most: 12 bytes of set-associative slot metadata
 * (pins, recency, lookups, the page's tag and its fill job) and room for pages placed
 * outside their home set; LFU adds its count sketch (4 one-byte rows about twice the slots
 * wide: 8 to 16 bytes a slot). bench:bookkeeping measures 12 and 20 for 4 Mi filled
 * one-row slots.
 */
export function pagerBytesPerSlot(eviction: Eviction): number {
  return eviction === 'lfu' ? 16 + 16 : 16;
}

// Shared by every ticket of a simulating pager, which has no cache to point into.
const NO_CACHE_ROWS = new Int32Array(0);

/** Pages pinned for one batch; pass it to gather or a layer's forward, which release it. */
export class PagerTicket {
  private released = false;
  /** @internal */
  constructor(
    readonly pager: TablePager,
    /** @internal */ readonly id: number,
    /** The batch's row ids (table rows). */
    readonly rowIds: Int32Array | BigInt64Array,
    /** Each row's row in the cache (pager.cache); empty for a simulating pager, which has no cache. */
    readonly cacheRows: Int32Array,
  ) {}

  get isReleased(): boolean {
    return this.released;
  }

  /** Unpins the pages (idempotent). A ticket that is never used should be released (else it is when collected). */
  release(): void {
    if (this.released) return;
    this.released = true;
    this.pager.releaseTicket(this);
  }
}

function requireRowIds(name: string, rowIds: unknown): Int32Array | BigInt64Array {
  if (!(rowIds instanceof Int32Array || rowIds instanceof BigInt64Array)) {
    throw new TypeError(`${name} must be an Int32Array or BigInt64Array, got ${describe(rowIds)}`);
  }
  return rowIds;
}

// A ticket dropped without release() gives its pages back when it is collected, so a
// forgotten ticket cannot pin part of the cache for good.
const unreleased = new FinalizationRegistry<{ handle: NativePagerHandle; id: number }>(({ handle, id }) => {
  try {
    native().pagerRelease(handle, id);
  } catch {
    // released already
  }
});

export class TablePager {
  private constructor(
    private readonly handle: NativePagerHandle,
    readonly dtype: TableDtype,
    readonly rows: number,
    readonly cols: number,
    readonly pageRows: number,
    /** Page slots in the cache. */
    readonly slots: number,
    readonly hotRows: number,
    readonly eviction: Eviction,
    /** The cache as a table of slots * pageRows + hotRows rows (undefined when simulating). */
    readonly cache: EngramTable | undefined,
    /** What the pager reads from: the table in memory, its file (files, for a table split by rows), or a remote store. */
    readonly home: EngramTable | TableFile | readonly TableFile[] | RemoteTable,
    /** 'cuda': the cache is in device memory (read by the layers' CUDA forward). */
    readonly device: 'cpu' | 'cuda' = 'cpu',
  ) {}

  /** @internal The cache as the layers' native calls take a table. */
  nativeCacheArgs(): NativeTableSource {
    if (this.cache !== undefined) return this.cache.nativeArgs();
    if (this.device !== 'cuda') throw new Error('a simulating pager holds no rows');
    // The addon reads the pager's device cache behind the handle.
    return { devicePager: this.handle, tableDtype: TABLE_DTYPE_CODES[this.dtype], tableRows: this.slots * this.pageRows + this.hotRows, tableCols: this.cols };
  }

  /** @internal What a CUDA upload for this pager takes: the format of its rows, no table. */
  nativeUploadArgs(): { tableless: true; tableDtype: number; tableCols: number } {
    return { tableless: true, tableDtype: TABLE_DTYPE_CODES[this.dtype], tableCols: this.cols };
  }

  /** Bytes of one row with its scales. */
  static rowBytes(dtype: TableDtype, cols: number): number {
    return cols * bytesPerElement(dtype) + (dtype === 'f8e4m3' ? cols / SCALE_BLOCK : 0);
  }

  /**
   * A pager over a table in memory (home tier RAM) or in a file (home tier file); an
   * array of files: a table split by rows across them, in row order.
   */
  static create(home: EngramTable | TableFile | readonly TableFile[] | RemoteTable, options: PagerOptions): TablePager {
    if (options === null || typeof options !== 'object') throw new TypeError(`options must be an object, got ${describe(options)}`);
    let dtype: TableDtype, rows: number, cols: number;
    let files: readonly TableFile[] | undefined;
    if (home instanceof EngramTable || home instanceof RemoteTable) {
      ({ dtype, rows, cols } = home);
    } else if (Array.isArray(home) || (home !== null && typeof home === 'object' && typeof (home as TableFile).path === 'string')) {
      files = Array.isArray(home) ? home : [home as TableFile];
      if (files.length === 0) throw new TypeError('home must hold at least one table file');
      rows = 0;
      ({ dtype, cols } = files[0]);
      files.forEach((f, i) => {
        const name = files!.length === 1 ? 'home' : `home[${i}]`;
        if (f === null || typeof f !== 'object' || typeof f.path !== 'string') throw new TypeError(`${name} must be { path, dtype, rows, cols, dataOffset }, got ${describe(f)}`);
        requireTableDtype(`${name}.dtype`, f.dtype);
        rows += requireInteger(`${name}.rows`, f.rows, 1);
        requireInteger(`${name}.cols`, f.cols, 1, 1 << 20);
        if (f.dtype !== dtype || f.cols !== cols) throw new RangeError(`${name} is ${f.dtype} x ${f.cols} but home[0] is ${dtype} x ${cols}: the files of one table must agree`);
        requireInteger(`${name}.dataOffset`, f.dataOffset, 0);
        if (dtype === 'f8e4m3') requireInteger(`${name}.scalesOffset`, f.scalesOffset, 0);
      });
      if (dtype === 'f8e4m3' && cols % SCALE_BLOCK !== 0) throw new RangeError(`home.cols must be a multiple of ${SCALE_BLOCK} for an fp8 table, got ${cols}`);
    } else {
      throw new TypeError(`home must be an EngramTable or { path, dtype, rows, cols, dataOffset }, got ${describe(home)}`);
    }
    const rowBytes = cols * bytesPerElement(dtype);
    const scaleRowBytes = dtype === 'f8e4m3' ? cols / SCALE_BLOCK : 0;
    const fullRow = rowBytes + scaleRowBytes;
    let pageRows: number;
    if (options.pageRows !== undefined && options.pageBytes !== undefined) throw new TypeError('give options.pageRows or options.pageBytes, not both');
    if (options.pageBytes !== undefined) {
      const bytes = requireInteger('options.pageBytes', options.pageBytes, 1);
      if (bytes % fullRow !== 0) {
        throw new RangeError(`options.pageBytes must be a multiple of the ${fullRow} bytes of one ${dtype} row of ${cols} channels${scaleRowBytes ? ' with its scales' : ''}, got ${bytes}`);
      }
      pageRows = bytes / fullRow;
    } else if (options.pageRows !== undefined) {
      pageRows = requireInteger('options.pageRows', options.pageRows, 1, 2 ** 31 - 1);
    } else {
      pageRows = home instanceof RemoteTable ? Math.max(1, Math.floor(DEFAULT_PAGE_BYTES / fullRow)) : 1;
    }
    pageRows = Math.min(pageRows, rows);
    const cacheBytes = requireInteger('options.cacheBytes', options.cacheBytes, 1);
    const hotRows = requireInteger('options.hotRows', options.hotRows ?? 0, 0, 2 ** 31 - 1);
    const eviction = options.eviction ?? 'lru';
    if (!isOwnKey(EVICTION_CODES, eviction)) throw new RangeError(`options.eviction must be 'lru', 'lfu' or 'direct', got ${describe(eviction)}`);
    const bandwidth = options.bandwidthGBps ?? 0;
    if (typeof bandwidth !== 'number' || !(bandwidth >= 0) || !Number.isFinite(bandwidth)) {
      throw new RangeError(`options.bandwidthGBps must be a finite number >= 0, got ${describe(bandwidth)}`);
    }
    if (hotRows * fullRow > cacheBytes) {
      throw new RangeError(`options.hotRows (${hotRows} rows of ${fullRow} bytes) does not fit in options.cacheBytes (${cacheBytes})`);
    }
    const pages = Math.ceil(rows / pageRows);
    if (pages >= 2 ** 32 - 1) {
      throw new RangeError(`the table's ${rows} rows make ${pages} pages of ${pageRows} row(s), more than the page table's 2^32 - 2: use larger pages (options.pageRows)`);
    }
    const slots = Math.min(pages, Math.floor((cacheBytes - hotRows * fullRow) / (pageRows * fullRow)));
    if (slots < 1 && hotRows === 0) {
      throw new RangeError(`options.cacheBytes (${cacheBytes}) is smaller than one page (${pageRows} rows x ${fullRow} bytes = ${pageRows * fullRow})`);
    }
    // The native bookkeeping (pagerBytesPerSlot) is refused up front when it alone would
    // not fit, rather than grown into.
    const bookkeeping = Math.max(0, slots) * pagerBytesPerSlot(eviction) + hotRows * 16;
    if (bookkeeping > os.totalmem() / 4) {
      throw new RangeError(
        `a cache of ${Math.max(0, slots).toLocaleString('en-US')} page slots needs about ${(bookkeeping / 2 ** 30).toFixed(1)} GiB of bookkeeping, more than a quarter of this machine's ` +
          `${(os.totalmem() / 2 ** 30).toFixed(0)} GiB: use larger pages (pageRows) or a smaller cacheBytes`,
      );
    }
    if (slots * pageRows + hotRows > 2 ** 31 - 1) throw new RangeError('the cache would hold more than 2^31 rows: use a smaller cacheBytes');
    const simulate = options.simulate === true;
    const device = options.device ?? 'cpu';
    if (device !== 'cpu' && device !== 'cuda') throw new RangeError(`options.device must be 'cpu' or 'cuda', got ${describe(device)}`);
    const deviceIndex = requireInteger('options.deviceIndex', options.deviceIndex ?? 0, 0, 1024);
    const readThreads = requireInteger('options.readThreads', options.readThreads ?? (files === undefined ? 1 : 4), 1, 256);
    let source: Record<string, unknown> = {};
    if (home instanceof RemoteTable) {
      if (simulate) throw new TypeError('options.simulate counts hits of a table in memory or a file, not of the remote tier');
      if (device === 'cuda') throw new TypeError("the remote tier fills a host cache: options.device 'cuda' is not supported with it yet");
      source = { remote: true };
    } else if (!simulate) {
      if (files === undefined) {
        source = { ...(home as EngramTable).nativeArgs() };
      } else {
        for (const f of files) if (!fs.existsSync(f.path)) throw new Error(`table file '${f.path}' does not exist`);
        source = { files: files.map((f) => ({ path: f.path, rows: f.rows, dataOffset: f.dataOffset, scalesOffset: f.scalesOffset ?? 0 })) };
      }
    }
    const created = native().pagerCreate({
      rows,
      rowBytes,
      scaleRowBytes,
      pageRows,
      slots: Math.max(0, slots),
      hotRows,
      eviction: EVICTION_CODES[eviction],
      simulate,
      bytesPerSecond: bandwidth * 1e9,
      readThreads,
      ...(device === 'cuda' && !simulate ? { device: deviceIndex, tableDtype: TABLE_DTYPE_CODES[dtype], tableCols: cols } : {}),
      ...source,
    });
    let cache: EngramTable | undefined;
    if (created.cache !== undefined) {
      const memory = MappedFile.fromHandle(created.cache, 'pager cache');
      const cacheRows = Math.max(0, slots) * pageRows + hotRows;
      cache = EngramTable.fromBytes(
        { buffer: memory, byteOffset: 0, byteLength: cacheRows * rowBytes },
        cacheRows,
        cols,
        dtype,
        scaleRowBytes ? { buffer: memory, byteOffset: created.cacheScalesByteOffset!, byteLength: cacheRows * scaleRowBytes } : undefined,
      );
    }
    const pager = new TablePager(created.pager, dtype, rows, cols, pageRows, Math.max(0, slots), hotRows, eviction, cache, home, simulate ? 'cpu' : device);
    if (home instanceof RemoteTable) pager.remote = new RemotePageSource(home, { pageRows, rowBytes, scaleRowBytes, rows });
    return pager;
  }

  /** The remote tier's fetcher (undefined for a table in memory or a file). */
  private remote: RemotePageSource | undefined;

  /**
   * Remote tier: resolves once the store is reached, authenticated and holds this table
   * (its manifest matches); rejects with why not. Other tiers: resolves at once.
   */
  ready(): Promise<void> {
    return this.remote?.ready ?? Promise.resolve();
  }

  /** Remote tier: what has been fetched (jobs, pages, bytes, latencies). */
  remoteStats(): RemoteStats | undefined {
    return this.remote?.stats;
  }

  /** Remote tier: closes the store connection (a process with one open does not exit). Other tiers: nothing to do. */
  async close(): Promise<void> {
    await this.remote?.close();
  }

  /**
   * Pins the pages of `rowIds`, starts copying the missing ones and returns at once.
   * Throws (and changes nothing) for a row outside the table, or when the batch needs
   * more pages than the cache can free while other tickets hold theirs: split the batch
   * or raise cacheBytes.
   */
  prefetch(rowIds: Int32Array | BigInt64Array): PagerTicket {
    requireRowIds('rowIds', rowIds);
    const translate = this.cache !== undefined || this.device === 'cuda';
    const cacheRows = translate ? new Int32Array(rowIds.length) : NO_CACHE_ROWS;
    const id = native().pagerAcquire(this.handle, rowIds, translate ? cacheRows : undefined);
    this.remote?.pump(this.handle); // the remote tier's fetches start now
    const ticket = new PagerTicket(this, id, rowIds, cacheRows);
    unreleased.register(ticket, { handle: this.handle, id }, ticket);
    return ticket;
  }

  private requireTicket(ticket: unknown): PagerTicket {
    if (!(ticket instanceof PagerTicket) || ticket.pager !== this) throw new TypeError(`ticket must come from this pager's prefetch(), got ${describe(ticket)}`);
    if (ticket.isReleased) throw new Error('this ticket was already used or released');
    return ticket;
  }

  /** Blocks until the ticket's copies landed (the wait counts as stall). */
  wait(ticket: PagerTicket): void {
    native().pagerWait(this.handle, this.requireTicket(ticket).id);
  }

  /** wait() off the event loop. */
  async waitAsync(ticket: PagerTicket): Promise<void> {
    await native().pagerWaitAsync(this.handle, this.requireTicket(ticket).id);
  }

  /** @internal */
  releaseTicket(ticket: PagerTicket): void {
    unreleased.unregister(ticket);
    native().pagerRelease(this.handle, ticket.id);
  }

  /** Rows decoded to fp32 through the cache (prefetching them unless a ticket is given). */
  gather(rowIds: Int32Array | BigInt64Array, options: { ticket?: PagerTicket; threads?: number; out?: Float32Array } = {}): Float32Array {
    if (this.cache === undefined) {
      throw new Error(this.device === 'cuda' ? "a CUDA pager's rows are read on the device by the layers' forward" : 'a simulating pager holds no rows');
    }
    const ticket = options.ticket === undefined ? this.prefetch(rowIds) : this.requireTicket(options.ticket);
    try {
      if (options.ticket !== undefined && ticket.rowIds !== rowIds) throw new RangeError('options.ticket was made for other rowIds');
      this.wait(ticket);
      return this.cache.gather(ticket.cacheRows, { threads: options.threads, out: options.out });
    } finally {
      ticket.release();
    }
  }

  /** Keeps `rows` (hottest first; at most hotRows) resident in the cache for good. */
  setHotRows(rows: BigInt64Array | Int32Array | readonly number[]): void {
    const list = rows instanceof BigInt64Array ? rows : BigInt64Array.from(Array.from(rows as ArrayLike<number>, (r) => BigInt(r)));
    native().pagerSetHotRows(this.handle, list);
    this.remote?.pump(this.handle);
  }

  stats(): PagerStats {
    const s = native().pagerStats(this.handle);
    return { ...s, rowHitRate: s.lookups ? s.rowHits / s.lookups : 0, pageHitRate: s.uniquePages ? s.pageHits / s.uniquePages : 0 };
  }

  resetStats(): void {
    native().pagerResetStats(this.handle);
  }
}

/**
 * @internal The distinct rows of a sample of lookups ranked as hottestRows ranks them
 * (most frequent first, ties: lower row first) with their counts, and the same rows in
 * ascending order with each one's rank (for looking a row's rank up by binary search).
 */
export function rankRows(rowIds: Int32Array | BigInt64Array): { rows: Float64Array; counts: Int32Array; ascending: Float64Array; rankOf: Int32Array } {
  const n = rowIds.length;
  const sorted = rowIds instanceof Int32Array ? Int32Array.from(rowIds).sort() : Float64Array.from(rowIds, (r) => Number(r)).sort();
  const ascending = new Float64Array(n);
  const countOf = new Int32Array(n);
  let distinct = 0;
  let most = 0;
  for (let i = 0; i < n; ) {
    let j = i + 1;
    while (j < n && sorted[j] === sorted[i]) ++j;
    ascending[distinct] = sorted[i];
    countOf[distinct++] = j - i;
    most = Math.max(most, j - i);
    i = j;
  }
  // A counting sort on the count, most first: rows of one count keep their ascending
  // order, which is the tie rule. (A comparison sort of millions of rows with a JS
  // comparator took seconds a call.)
  const next = new Int32Array(most + 1);
  for (let i = 0; i < distinct; i++) next[countOf[i]]++;
  for (let c = most, at = 0; c >= 1; c--) {
    const rowsWithC = next[c];
    next[c] = at;
    at += rowsWithC;
  }
  const rows = new Float64Array(distinct);
  const counts = new Int32Array(distinct);
  const rankOf = new Int32Array(distinct);
  for (let i = 0; i < distinct; i++) {
    const rank = next[countOf[i]]++;
    rows[rank] = ascending[i];
    counts[rank] = countOf[i];
    rankOf[i] = rank;
  }
  return { rows, counts, ascending: ascending.subarray(0, distinct), rankOf };
}

/**
 * The `k` most frequent rows of a sample of lookups (ties: lower row first): the rows
 * to keep resident with setHotRows, from a pass of the hasher over real text.
 */
export function hottestRows(rowIds: Int32Array | BigInt64Array, k: number): BigInt64Array {
  requireRowIds('rowIds', rowIds);
  requireInteger('k', k, 0);
  const { rows } = rankRows(rowIds);
  return BigInt64Array.from(rows.subarray(0, Math.min(k, rows.length)), (r) => BigInt(r));
}
