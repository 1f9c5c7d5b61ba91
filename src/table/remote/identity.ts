// What a remote table is: the checkpoint tensor it was pushed from (its name and the
// SHA-256 of the safetensors headers holding it) and its geometry. The id derived from it
// names every key of the table, so two checkpoints never share pages, and the manifest
// stored with the pages lets a layer refuse a store that holds another table.
import { createHash } from 'node:crypto';
import fs from 'node:fs';

import { regionBytes } from '../../core/tensor.js';
import type { EngramTable, TableDtype } from '../table.js';

export interface TableIdentity {
  /** The table tensor's name in the checkpoint (e.g. `layers.1.engram.embed.weight`). */
  tensor: string;
  /** SHA-256 (hex) of each safetensors header holding the table's rows, in row order. */
  headerSha256: string[];
  /**
   * SHA-256 of 16 blocks of 4 KiB spread evenly over the table's bytes: two checkpoints
   * of one architecture have identical headers, but not identical rows.
   */
  sampleSha256: string;
  dtype: TableDtype;
  rows: number;
  cols: number;
}

/** SHA-256 of a safetensors file's header (its 8-byte length and the JSON). */
export function safetensorsHeaderSha256(path: string): string {
  const fd = fs.openSync(path, 'r');
  try {
    const len = Buffer.alloc(8);
    if (fs.readSync(fd, len, 0, 8, 0) !== 8) throw new Error(`'${path}' is too short to be a safetensors file`);
    const n = Number(len.readBigUInt64LE(0));
    if (!(n > 0 && n <= 100 * 2 ** 20)) throw new Error(`'${path}' has a header length of ${n} bytes: not a safetensors file`);
    const header = Buffer.alloc(n);
    if (fs.readSync(fd, header, 0, n, 8) !== n) throw new Error(`'${path}' ends inside its header`);
    return createHash('sha256').update(len).update(header).digest('hex');
  } finally {
    fs.closeSync(fd);
  }
}

/** SHA-256 of 16 blocks of up to 4 KiB at evenly spread offsets of the table's rows. */
export function tableSampleSha256(table: EngramTable): string {
  const hash = createHash('sha256');
  const total = table.rows * table.rowBytes;
  const block = Math.min(4096, total);
  for (let i = 0; i < 16; i++) {
    const at = Math.floor(((total - block) * i) / 15);
    // The part holding byte `at` (a block may run into the next part: read each piece).
    let left = block;
    let pos = at;
    let partStart = 0;
    for (const part of table.parts) {
      const partBytes = part.rows * table.rowBytes;
      if (left > 0 && pos < partStart + partBytes) {
        const n = Math.min(left, partStart + partBytes - pos);
        hash.update(regionBytes({ buffer: part.region.buffer, byteOffset: part.region.byteOffset + (pos - partStart), byteLength: n }, 'table sample'));
        left -= n;
        pos += n;
      }
      partStart += partBytes;
    }
  }
  return hash.digest('hex');
}

/** The identity of `table`, read from `tensor` in the safetensors files `paths` (row order). */
export function tableIdentity(table: EngramTable, tensor: string, paths: readonly string[]): TableIdentity {
  const distinct = paths.filter((p, i) => paths.indexOf(p) === i);
  return { tensor, headerSha256: distinct.map(safetensorsHeaderSha256), sampleSha256: tableSampleSha256(table), dtype: table.dtype, rows: table.rows, cols: table.cols };
}

/** The table's id: 32 hex digits of SHA-256 over the identity. */
export function tableId(identity: TableIdentity): string {
  const canonical = JSON.stringify([identity.tensor, identity.headerSha256, identity.sampleSha256, identity.dtype, identity.rows, identity.cols]);
  return createHash('sha256').update(canonical).digest('hex').slice(0, 32);
}

/** What the store keeps beside the pages: the identity, how the table is cut into pages, and whether the push finished. */
/**
 * How a table's page keys are spelled: 1, `{prefix}:{tableId}:{{first 8 hex of the id}.{bucket}}:{page}`;
 * 2 (what a push writes), `{prefix}:{{first 16 hex of the id}.{bucket}}:{page}`, half as
 * long, which halves the client's work per key (it hashes and writes each one).
 */
export type PageKeyFormat = 1 | 2;
export const PAGE_KEY_FORMAT: PageKeyFormat = 2;

export interface RemoteManifest {
  format: 'engram-kernels remote table';
  version: 1;
  tableId: string;
  identity: TableIdentity;
  rowBytes: number;
  scaleRowBytes: number;
  pageRows: number;
  pages: number;
  /** Hash-tag groups the page keys fall in (see RemoteStore.pageKey). */
  buckets: number;
  /** How the page keys are spelled (see RemoteStore.pageKey); absent in manifests of format 1, which wrote no such field. */
  pageKeys?: PageKeyFormat;
  checksum: 'crc32c';
  complete: boolean;
}

/** Why `m` does not describe the table `want` in pages of `pageRows` rows (undefined: it does). */
export function manifestMismatch(m: RemoteManifest, want: TableIdentity, pageRows: number): string | undefined {
  if (m.format !== 'engram-kernels remote table' || m.version !== 1) return 'it is not an engram-kernels table manifest of version 1';
  const id = m.identity;
  if (id.tensor !== want.tensor) return `it holds tensor '${id.tensor}', not '${want.tensor}'`;
  if (id.headerSha256.join() !== want.headerSha256.join()) return 'it was pushed from another checkpoint (the safetensors headers differ)';
  if (id.sampleSha256 !== want.sampleSha256) return 'it was pushed from another checkpoint (the table rows differ)';
  if (id.dtype !== want.dtype || id.rows !== want.rows || id.cols !== want.cols) {
    return `it holds a ${id.dtype} table of ${id.rows} x ${id.cols}, this layer's is ${want.dtype} ${want.rows} x ${want.cols}`;
  }
  if (!(Number.isInteger(m.buckets) && m.buckets >= 1)) return 'it names no key groups (buckets)';
  if (m.pageKeys !== undefined && m.pageKeys !== 1 && m.pageKeys !== 2) return `its page keys are spelled in format ${String(m.pageKeys)}, which this library does not read (1 or 2)`;
  if (m.pageRows !== pageRows) return `its pages hold ${m.pageRows} rows, this pager's ${pageRows} (pass pageRows: ${m.pageRows})`;
  if (!m.complete) return 'its push has not finished (run `engram store push` again to resume it)';
  return undefined;
}
