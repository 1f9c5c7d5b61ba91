// safetensors reading (memory-mapped by the addon: tensors are views of the file, no
// copy) and writing (atomic: a temporary file renamed into place). Format: an 8-byte
// little-endian header length N, N bytes of JSON { name: { dtype, shape, data_offsets },
// "__metadata__": { string: string } }, then the tensor bytes.
import fs from 'node:fs';
import path from 'node:path';

import { DTYPE_BYTES, elementCount, isByteRegion, MAX_VIEW_BYTES, regionBytes, type ByteRegion, type Tensor, type TensorDtype } from './tensor.js';
import { mapFileBuffer, MappedFile, MAX_EXTERNAL_BYTES } from './mapped-file.js';
import { describe, requireRegularFile } from './validate.js';

export interface SafetensorsFile {
  path: string;
  metadata: Record<string, string>;
  tensors: Record<string, Tensor>;
}

/**
 * Reads a safetensors file; every tensor's `data` is a region of one memory mapping. Files
 * over 4 GiB stay mapped natively (MappedFile): tensors up to 4 GiB get ArrayBuffer
 * views of it, bigger ones (a 98 GB table) a region of the MappedFile itself.
 */
export function readSafetensors(file: string): SafetensorsFile {
  requireRegularFile('path', file);
  if (MappedFile.sizeOf(file) <= MAX_EXTERNAL_BYTES) return parseSafetensors(mapFileBuffer(file), file);
  const mapped = MappedFile.open(file);
  return parseSource(
    {
      byteLength: mapped.byteLength,
      bytes: (offset, length) => new Uint8Array(mapped.view(offset, length)),
      region: (offset, length) =>
        length <= MAX_EXTERNAL_BYTES ? { buffer: mapped.view(offset, length), byteOffset: 0, byteLength: length } : { buffer: mapped, byteOffset: offset, byteLength: length },
    },
    file,
  );
}

interface Source {
  byteLength: number;
  bytes(offset: number, length: number): Uint8Array;
  region(offset: number, length: number): ByteRegion;
}

/** Parses safetensors bytes held in `buffer` (checks every offset against the buffer). */
export function parseSafetensors(buffer: ArrayBuffer, name = 'buffer'): SafetensorsFile {
  return parseSource(
    {
      byteLength: buffer.byteLength,
      bytes: (offset, length) => new Uint8Array(buffer, offset, length),
      region: (offset, length) => ({ buffer, byteOffset: offset, byteLength: length }),
    },
    name,
  );
}

function parseSource(source: Source, name: string): SafetensorsFile {
  const size = source.byteLength;
  const bad = (why: string) => new RangeError(`'${name}' is not a valid safetensors file: ${why}`);
  if (size < 8) throw bad(`it has ${size} bytes, fewer than the 8-byte header length`);
  const prefix8 = source.bytes(0, 8);
  const headerLength = Number(new DataView(prefix8.buffer, prefix8.byteOffset, 8).getBigUint64(0, true));
  if (headerLength > size - 8) throw bad(`the header length ${headerLength} runs past the end of the file (${size} bytes)`);
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder().decode(source.bytes(8, headerLength)));
  } catch (err) {
    throw bad(`the header is not valid JSON (${(err as Error).message})`);
  }
  if (header === null || typeof header !== 'object' || Array.isArray(header)) throw bad('the header is not a JSON object');
  const dataStart = 8 + headerLength;
  const dataSize = size - dataStart;
  const metadata: Record<string, string> = {};
  const tensors: Record<string, Tensor> = {};
  const spans: Array<{ key: string; begin: number; end: number }> = [];
  for (const [key, value] of Object.entries(header as Record<string, unknown>)) {
    if (key === '__metadata__') {
      if (value === null || typeof value !== 'object') throw bad('__metadata__ is not an object');
      for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
        if (typeof v !== 'string') throw bad(`__metadata__.${k} is not a string`);
        metadata[k] = v;
      }
      continue;
    }
    const entry = value as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (entry === null || typeof entry !== 'object') throw bad(`tensor '${key}' has no { dtype, shape, data_offsets }`);
    if (typeof entry.dtype !== 'string' || !(entry.dtype in DTYPE_BYTES)) {
      throw bad(`tensor '${key}' has an unknown dtype ${describe(entry.dtype)} (known: ${Object.keys(DTYPE_BYTES).join(', ')})`);
    }
    const dtype = entry.dtype as TensorDtype;
    const shape = entry.shape;
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) throw bad(`tensor '${key}' has an invalid shape ${JSON.stringify(shape)}`);
    const offsets = entry.data_offsets;
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0)) {
      throw bad(`tensor '${key}' has invalid data_offsets ${JSON.stringify(offsets)}`);
    }
    const [begin, end] = offsets as [number, number];
    if (begin > end || end > dataSize) throw bad(`tensor '${key}' data_offsets [${begin}, ${end}] run outside the ${dataSize} data bytes`);
    const want = elementCount(shape) * DTYPE_BYTES[dtype];
    if (end - begin !== want) throw bad(`tensor '${key}' has ${end - begin} bytes but ${dtype} [${shape.join(', ')}] needs ${want}`);
    tensors[key] = { dtype, shape: shape.slice(), data: source.region(dataStart + begin, end - begin), fileOffset: dataStart + begin };
    spans.push({ key, begin, end });
  }
  // As the reference implementation requires: the tensors tile the data section exactly,
  // with no overlap (two tensors aliasing bytes), no gap and no trailing bytes.
  spans.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let at = 0;
  for (const s of spans) {
    if (s.begin < at) throw bad(`tensor '${s.key}' data_offsets [${s.begin}, ${s.end}] overlap the tensor before it (which ends at ${at})`);
    if (s.begin > at) throw bad(`the data bytes [${at}, ${s.begin}) before tensor '${s.key}' belong to no tensor`);
    at = s.end;
  }
  if (at !== dataSize) throw bad(`${dataSize - at} bytes after the last tensor belong to no tensor (the data section is ${dataSize} bytes)`);
  return { path: name, metadata, tensors };
}

/**
 * A tensor written as a hole: its bytes read back as zeros and take no disk space on
 * file systems with sparse files (synthetic full-size tables).
 */
export interface TensorHole {
  dtype: TensorDtype;
  shape: number[];
  hole: true;
}

const isHole = (t: Tensor | TensorHole): t is TensorHole => (t as TensorHole).hole === true;

const ALIGN_ORDER: TensorDtype[] = ['F64', 'I64', 'F32', 'I32', 'F16', 'BF16', 'F8_E4M3', 'F8_E8M0', 'U8', 'I8'];

/**
 * Writes tensors (widest element types first, so every tensor starts aligned to its
 * element size) and string metadata. Written to a temporary file, then renamed: a
 * failure never leaves a half-written file at `file`.
 */
export function writeSafetensors(file: string, tensors: Record<string, Tensor | TensorHole>, metadata: Record<string, string> = {}): void {
  if (typeof file !== 'string') throw new TypeError(`path must be a string, got ${describe(file)}`);
  const names = Object.keys(tensors).sort((a, b) => ALIGN_ORDER.indexOf(tensors[a].dtype) - ALIGN_ORDER.indexOf(tensors[b].dtype) || (a < b ? -1 : a > b ? 1 : 0));
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) {
    for (const [k, v] of Object.entries(metadata)) if (typeof v !== 'string') throw new TypeError(`metadata.${k} must be a string, got ${describe(v)}`);
    header.__metadata__ = metadata;
  }
  let offset = 0;
  for (const name of names) {
    const t = tensors[name];
    if (!(t.dtype in DTYPE_BYTES)) throw new TypeError(`tensor '${name}' has an unknown dtype ${describe(t.dtype)}`);
    // The shapes the reader accepts, and no other: safe non-negative integers.
    if (!Array.isArray(t.shape) || !t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new RangeError(`tensor '${name}' has an invalid shape ${describe(t.shape)}: dimensions must be non-negative integers`);
    }
    const want = elementCount(t.shape) * DTYPE_BYTES[t.dtype];
    if (!isHole(t)) {
      if (!isByteRegion(t.data)) throw new TypeError(`tensor '${name}' data must be a typed array or a byte region, got ${describe(t.data)}`);
      if (t.data.byteLength !== want) throw new RangeError(`tensor '${name}' has ${t.data.byteLength} bytes but ${t.dtype} [${t.shape.join(', ')}] needs ${want}`);
    }
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + want] };
    offset += want;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8); // data starts 8-aligned
  const headerBytes = Buffer.from(json, 'utf8');
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(headerBytes.length));
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`);
  const fd = fs.openSync(tmp, 'w');
  try {
    fs.writeSync(fd, prefix);
    fs.writeSync(fd, headerBytes);
    const chunk = Math.min(MAX_VIEW_BYTES, 1 << 30);
    let position = prefix.length + headerBytes.length;
    for (const name of names) {
      const t = tensors[name];
      const bytes = elementCount(t.shape) * DTYPE_BYTES[t.dtype];
      if (!isHole(t)) {
        const d = t.data;
        for (let at = 0; at < d.byteLength; at += chunk) {
          const view = regionBytes({ buffer: d.buffer, byteOffset: d.byteOffset + at, byteLength: Math.min(chunk, d.byteLength - at) }, `tensor '${name}'`);
          let written = 0;
          while (written < view.length) written += fs.writeSync(fd, view, written, view.length - written, position + at + written);
        }
      }
      position += bytes;
    }
    fs.ftruncateSync(fd, position); // holes at the end still count toward the size
    fs.closeSync(fd);
    fs.renameSync(tmp, file);
  } catch (err) {
    try {
      fs.closeSync(fd);
    } catch {
      // already closed
    }
    fs.rmSync(tmp, { force: true });
    throw err;
  }
}
