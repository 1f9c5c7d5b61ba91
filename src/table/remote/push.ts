// Uploading a table's pages to the remote tier's store, resumably: each page is compared
// with what the store holds (its header: index, rows, CRC32C) and sent only when missing
// or different; the manifest is marked complete only once every page's header is read
// back and matches.
import { regionBytes } from '../../core/tensor.js';
import { DEFAULT_PAGE_BYTES } from '../pager.js';
import { SCALE_BLOCK, type EngramTable } from '../table.js';
import { crc32c, decodePage, encodePage, PAGE_HEADER_BYTES, PAGE_MAGIC } from './page-format.js';
import { manifestMismatch, PAGE_KEY_FORMAT, tableId as idOf, type PageKeyFormat, type RemoteManifest, type TableIdentity } from './identity.js';
import type { RemoteStore } from './store.js';
import { describe, requireInteger } from '../../core/validate.js';

/** Rows per page the pager uses by default (pages of about 64 KiB): push and tier agree on it. */
export function defaultPageRows(table: { rows: number; cols: number; rowBytes: number; dtype: string }): number {
  const full = table.rowBytes + (table.dtype === 'f8e4m3' ? table.cols / SCALE_BLOCK : 0);
  return Math.min(table.rows, Math.max(1, Math.floor(DEFAULT_PAGE_BYTES / full)));
}

/** Hash-tag groups of a pushed table's keys unless PushOptions.buckets says otherwise. */
export const DEFAULT_BUCKETS = 128;

export interface PushOptions {
  /** Rows per page (default: as the pager's default, about 64 KiB a page). */
  pageRows?: number;
  /** Pages compared and sent together (default 256). */
  batchPages?: number;
  /**
   * Hash-tag groups of the page keys (default 128): a batch reads each group it touches
   * with one MGET. More groups spread a table over more slots (and so more evenly over
   * many nodes); fewer make fewer, larger reads (a client's cost is per command).
   */
  buckets?: number;
  /**
   * How the page keys are spelled (default 2, the shorter; see RemoteStore.pageKey). A
   * push that resumes or repairs a table already in the store keeps the table's format.
   * 1 writes the keys of the first releases, for readers that only know those.
   */
  pageKeys?: PageKeyFormat;
  /**
   * Read every stored page whole and check its payload's CRC32C, re-sending the ones that
   * fail (a value altered in the store keeps its header, which a plain resume compares).
   * Costs a read of the whole table.
   */
  repair?: boolean;
  /** Called as pages are checked, sent and verified. */
  onProgress?: (done: number, total: number, phase: 'push' | 'verify') => void;
}

export interface PushResult {
  tableId: string;
  /** The hash-tag groups of its keys. */
  buckets: number;
  /** How its page keys are spelled. */
  pageKeys: PageKeyFormat;
  pages: number;
  /** Pages sent now; the others were in the store already, intact. */
  sent: number;
  bytesSent: number;
  seconds: number;
}

/** Page `page`'s payload: its rows' bytes, then (fp8) their scales. */
function pagePayload(table: EngramTable, page: number, pageRows: number): Uint8Array {
  const first = page * pageRows;
  const rows = Math.min(pageRows, table.rows - first);
  const scaleRowBytes = table.dtype === 'f8e4m3' ? table.cols / SCALE_BLOCK : 0;
  const out = new Uint8Array(rows * (table.rowBytes + scaleRowBytes));
  let partStart = 0;
  for (const part of table.parts) {
    const begin = Math.max(first, partStart);
    const end = Math.min(first + rows, partStart + part.rows);
    if (begin < end) {
      const r = begin - partStart;
      const n = end - begin;
      out.set(regionBytes({ buffer: part.region.buffer, byteOffset: part.region.byteOffset + r * table.rowBytes, byteLength: n * table.rowBytes }, 'table rows'), (begin - first) * table.rowBytes);
      if (scaleRowBytes > 0) {
        const s = part.scaleRegion!;
        out.set(regionBytes({ buffer: s.buffer, byteOffset: s.byteOffset + r * scaleRowBytes, byteLength: n * scaleRowBytes }, 'table scales'), rows * table.rowBytes + (begin - first) * scaleRowBytes);
      }
    }
    partStart += part.rows;
  }
  return out;
}

/** Whether a stored header says: page `page` of `rows` rows with this checksum. */
function headerMatches(h: Buffer | null, page: number, rows: number, payloadBytes: number, crc: number): boolean {
  return h !== null && h.byteLength >= PAGE_HEADER_BYTES && h.readUInt32LE(0) === PAGE_MAGIC && h.readUInt32LE(16) === page && h.readUInt32LE(20) === rows && h.readUInt32LE(24) === payloadBytes && h.readUInt32LE(28) === crc;
}

/** Uploads `table` (identified by `identity`) to `store`; an interrupted push resumes where it stopped. */
export async function pushTable(store: RemoteStore, table: EngramTable, identity: TableIdentity, options: PushOptions = {}): Promise<PushResult> {
  if (options === null || typeof options !== 'object') throw new TypeError(`options must be an object, got ${describe(options)}`);
  const t0 = performance.now();
  const pageRows = requireInteger('options.pageRows', options.pageRows ?? defaultPageRows(table), 1, table.rows);
  const batch = requireInteger('options.batchPages', options.batchPages ?? 256, 1, 1 << 20);
  const buckets = requireInteger('options.buckets', options.buckets ?? DEFAULT_BUCKETS, 1, 16384);
  const id = idOf(identity);
  const pages = Math.ceil(table.rows / pageRows);
  const scaleRowBytes = table.dtype === 'f8e4m3' ? table.cols / SCALE_BLOCK : 0;
  if (options.pageKeys !== undefined && options.pageKeys !== 1 && options.pageKeys !== 2) throw new RangeError(`options.pageKeys must be 1 or 2, got ${describe(options.pageKeys)}`);
  const manifestKey = store.manifestKey(id);
  const existing = await store.get(manifestKey);
  let keyFormat = options.pageKeys ?? PAGE_KEY_FORMAT;
  if (existing !== null) {
    const m = JSON.parse(existing.toString('utf8')) as RemoteManifest;
    const stored = m.pageKeys ?? 1;
    const why =
      manifestMismatch({ ...m, complete: true }, identity, pageRows) ??
      (m.buckets !== buckets ? `its keys fall in ${m.buckets} groups, not ${buckets}` : undefined) ??
      (options.pageKeys !== undefined && options.pageKeys !== stored ? `its page keys are in format ${stored}, not ${options.pageKeys}` : undefined);
    if (why !== undefined) throw new Error(`remote tier: '${manifestKey}' already holds this table differently: ${why}`);
    keyFormat = stored;
  }
  const manifest: RemoteManifest = {
    format: 'engram-kernels remote table',
    version: 1,
    tableId: id,
    identity,
    rowBytes: table.rowBytes,
    scaleRowBytes,
    pageRows,
    pages,
    buckets,
    ...(keyFormat === 1 ? {} : { pageKeys: keyFormat }),
    checksum: 'crc32c',
    complete: false,
  };
  const keyOf = store.pageKeys(id, buckets, keyFormat);
  await store.setMany([[manifestKey, JSON.stringify(manifest)]]);
  const rowsOf = (p: number) => Math.min(pageRows, table.rows - p * pageRows);
  const crcs = new Uint32Array(pages);
  let sent = 0;
  let bytesSent = 0;
  for (let first = 0; first < pages; first += batch) {
    const list = Array.from({ length: Math.min(batch, pages - first) }, (_, i) => first + i);
    const keys = list.map(keyOf);
    const payloads = list.map((p) => pagePayload(table, p, pageRows));
    list.forEach((p, i) => (crcs[p] = crc32c(payloads[i])));
    const stored = options.repair === true ? await store.getMany(keys) : await store.headers(keys, PAGE_HEADER_BYTES);
    const send: Array<[string, Buffer]> = [];
    list.forEach((p, i) => {
      let ok = headerMatches(stored[i], p, rowsOf(p), payloads[i].byteLength, crcs[p]);
      if (ok && options.repair === true) {
        try {
          decodePage(stored[i], keys[i], id, p, rowsOf(p), payloads[i].byteLength);
        } catch {
          ok = false;
        }
      }
      if (!ok) send.push([keys[i], encodePage(id, p, rowsOf(p), payloads[i])]);
    });
    await store.setManyGrouped(send);
    sent += send.length;
    bytesSent += send.reduce((s, [, v]) => s + v.byteLength, 0);
    options.onProgress?.(first + list.length, pages, 'push');
  }
  // Verify: every page's header as stored, against the checksums just computed.
  for (let first = 0; first < pages; first += batch) {
    const list = Array.from({ length: Math.min(batch, pages - first) }, (_, i) => first + i);
    const headers = await store.headers(list.map(keyOf), PAGE_HEADER_BYTES);
    list.forEach((p, i) => {
      const payloadBytes = rowsOf(p) * (table.rowBytes + scaleRowBytes);
      if (!headerMatches(headers[i], p, rowsOf(p), payloadBytes, crcs[p])) throw new Error(`remote tier: page ${p} ('${keyOf(p)}') did not verify after the push; run the push again`);
    });
    options.onProgress?.(first + list.length, pages, 'verify');
  }
  await store.setMany([[manifestKey, JSON.stringify({ ...manifest, complete: true })]]);
  return { tableId: id, buckets, pageKeys: keyFormat, pages, sent, bytesSent, seconds: (performance.now() - t0) / 1000 };
}
