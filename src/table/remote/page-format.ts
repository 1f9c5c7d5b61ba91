// One page of a table as the remote tier stores it: a 32-byte header, then the page's
// rows, then (fp8) their UE8M0 scales. The header names the table and the page, so a
// value stored under the wrong key, for another table, cut short or altered is refused
// (CRC32C of the payload) before a byte of it reaches the cache.
import { native } from '../../native/index.js';

/**
 * CRC32C of `data`: the addon's (the SSE4.2 instruction where the CPU has it, else a
 * table), the same one the fetch path checks every page with.
 */
export function crc32c(data: Uint8Array): number {
  return native().crc32c(data);
}

export const PAGE_MAGIC = 0x47504b45; // "EKPG" little-endian
export const PAGE_FORMAT_VERSION = 1;
export const PAGE_HEADER_BYTES = 32;

export interface PageHeader {
  /** The table's id (the first 8 bytes of its identity hash). */
  tableTag: bigint;
  page: number;
  rows: number;
  payloadBytes: number;
  crc32c: number;
}

/** The table tag as stored in a page header (bytes 8..16): the first 8 bytes of the table id (hex). */
export function tableTagBytes(tableId: string): Buffer {
  return Buffer.from(tableId.slice(0, 16), 'hex');
}

/** The table tag: the first 8 bytes of the table id (hex), little-endian. */
export function tableTag(tableId: string): bigint {
  return tableTagBytes(tableId).readBigUInt64LE(0);
}

/** A page value: the header and `payload` (rows, then scales). */
export function encodePage(tableId: string, page: number, rows: number, payload: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(PAGE_HEADER_BYTES + payload.byteLength);
  out.writeUInt32LE(PAGE_MAGIC, 0);
  out.writeUInt16LE(PAGE_FORMAT_VERSION, 4);
  out.writeUInt16LE(0, 6);
  out.writeBigUInt64LE(tableTag(tableId), 8);
  out.writeUInt32LE(page, 16);
  out.writeUInt32LE(rows, 20);
  out.writeUInt32LE(payload.byteLength, 24);
  out.writeUInt32LE(crc32c(payload), 28);
  out.set(payload, PAGE_HEADER_BYTES);
  return out;
}

/**
 * The payload of a stored page, after checking everything the header promises: that it
 * is this table's page `page` of `rows` rows and `payloadBytes` bytes, whole and intact.
 * Throws an Error naming the key and what is wrong otherwise.
 */
export function decodePage(value: Buffer | null, key: string, tableId: string, page: number, rows: number, payloadBytes: number): Buffer {
  const bad = (why: string) => new Error(`remote tier: the value of '${key}' (page ${page}) ${why}; the page was not used`);
  if (value === null) throw bad('is missing (was the table pushed completely? run `engram store push` again to resume)');
  if (value.byteLength < PAGE_HEADER_BYTES) throw bad(`is ${value.byteLength} bytes, shorter than the ${PAGE_HEADER_BYTES}-byte header`);
  if (value.readUInt32LE(0) !== PAGE_MAGIC) throw bad('is not an engram-kernels page (wrong magic)');
  const version = value.readUInt16LE(4);
  if (version !== PAGE_FORMAT_VERSION) throw bad(`has page format version ${version}, this library reads ${PAGE_FORMAT_VERSION}`);
  if (value.readBigUInt64LE(8) !== tableTag(tableId)) throw bad('belongs to another table');
  if (value.readUInt32LE(16) !== page) throw bad(`holds page ${value.readUInt32LE(16)}`);
  if (value.readUInt32LE(20) !== rows) throw bad(`holds ${value.readUInt32LE(20)} rows, the table's page has ${rows}`);
  const declared = value.readUInt32LE(24);
  if (declared !== payloadBytes) throw bad(`declares ${declared} payload bytes, the page has ${payloadBytes}`);
  if (value.byteLength !== PAGE_HEADER_BYTES + payloadBytes) throw bad(`is ${value.byteLength} bytes, the page needs ${PAGE_HEADER_BYTES + payloadBytes} (truncated or padded)`);
  const payload = value.subarray(PAGE_HEADER_BYTES);
  if (crc32c(payload) !== value.readUInt32LE(28)) throw bad('fails its CRC32C checksum (corrupt)');
  return payload;
}
