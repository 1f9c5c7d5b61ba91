// `engram store strip`: a copy of a checkpoint without its Engram tables' bytes, for hosts
// that read the tables from the remote tier. Every file is copied as it is, except that the
// byte ranges of the tables (and their fp8 scales) are left as holes: the headers stay
// byte for byte the same (the remote identity hashes them), the files keep their sizes,
// and the holes take no disk space. A record of each table's identity goes beside them.
import fs from 'node:fs';
import path from 'node:path';

import type { Tensor } from '../../core/tensor.js';
import { remoteIdentity } from '../tiers.js';
import { tablesOf } from './push-checkpoint.js';
import { STRIPPED_RECORD, STRIPPED_RECORD_SUFFIX, type StrippedRecord } from './stripped.js';

export interface StripResult {
  /** The tables left out, by tensor name. */
  tensors: string[];
  /** Bytes of the source the copy left out (the holes), and the bytes it wrote. */
  bytesLeftOut: number;
  bytesWritten: number;
}

type Ranges = Map<string, Array<[number, number]>>; // file -> [offset, length] of the table bytes

function addRanges(holes: Ranges, t: Tensor | undefined, file: string, tensor: string): void {
  if (t === undefined) return;
  for (const part of t.rowParts ?? [{ path: file, fileOffset: t.fileOffset, data: t.data }]) {
    if (part.fileOffset === undefined) throw new Error(`'${tensor}' was not read from a file: nothing to strip`);
    const key = path.resolve(part.path);
    holes.set(key, [...(holes.get(key) ?? []), [part.fileOffset, part.data.byteLength]]);
  }
}

/** Copies `from` into a new file `to` of the same size, leaving `holes` unwritten. */
function copyWithHoles(from: string, to: string, holes: Array<[number, number]>, progress: (bytes: number) => void): number {
  const size = fs.statSync(from).size;
  const sorted = [...holes].sort((a, b) => a[0] - b[0]);
  const keep: Array<[number, number]> = [];
  let at = 0;
  for (const [offset, length] of sorted) {
    if (offset > at) keep.push([at, offset - at]);
    at = Math.max(at, offset + length);
  }
  if (at < size) keep.push([at, size - at]);
  const chunk = Buffer.allocUnsafe(16 << 20);
  const src = fs.openSync(from, 'r');
  const dst = fs.openSync(to, 'wx');
  let written = 0;
  try {
    fs.ftruncateSync(dst, size);
    for (const [offset, length] of keep) {
      for (let done = 0; done < length; ) {
        const n = fs.readSync(src, chunk, 0, Math.min(chunk.length, length - done), offset + done);
        if (n <= 0) throw new Error(`'${from}' ended early while copying it`);
        fs.writeSync(dst, chunk, 0, n, offset + done);
        done += n;
        written += n;
        progress(n);
      }
    }
    fs.fsyncSync(dst);
  } finally {
    fs.closeSync(src);
    fs.closeSync(dst);
  }
  return written;
}

/**
 * Writes `to`: the checkpoint `from` (a V4.1 directory, or a paper layer/model safetensors
 * file) without its Engram tables' bytes. `to` must not exist. The record is written
 * first, so that a copy interrupted half way is never read as a whole checkpoint.
 */
export function stripCheckpoint(from: string, to: string, options: { onProgress?: (done: number, total: number) => void } = {}): StripResult {
  if (fs.existsSync(to)) throw new Error(`'${to}' already exists: strip writes a new checkpoint`);
  const tables = tablesOf(from);
  const holes: Ranges = new Map();
  const identities = tables.map((t) => {
    addRanges(holes, t.source.data, t.source.path, t.source.tensor ?? 'table');
    addRanges(holes, t.source.scales, t.source.scalesPath ?? t.source.path, t.source.tensor ?? 'table');
    return remoteIdentity(t.table, t.source);
  });
  const record: StrippedRecord = { format: 'engram-kernels stripped checkpoint', version: 1, tables: identities };
  const directory = fs.statSync(from).isDirectory();
  const files = directory ? fs.readdirSync(from).filter((f) => fs.statSync(path.join(from, f)).isFile()).map((f) => path.join(from, f)) : [from];
  const destination = (f: string) => (directory ? path.join(to, path.basename(f)) : to);
  const leftOut = [...holes.values()].flat().reduce((n, [, length]) => n + length, 0);
  const total = files.reduce((n, f) => n + fs.statSync(f).size, 0) - leftOut;
  if (directory) fs.mkdirSync(to);
  fs.writeFileSync(directory ? path.join(to, STRIPPED_RECORD) : to + STRIPPED_RECORD_SUFFIX, JSON.stringify(record, null, 1) + '\n', { flag: 'wx' });
  let done = 0;
  const progress = (n: number) => {
    done += n;
    options.onProgress?.(done, total);
  };
  let written = 0;
  for (const f of files) {
    const ranges = holes.get(path.resolve(f));
    if (ranges !== undefined) {
      written += copyWithHoles(f, destination(f), ranges, progress);
    } else {
      fs.copyFileSync(f, destination(f), fs.constants.COPYFILE_EXCL);
      written += fs.statSync(f).size;
      progress(fs.statSync(f).size);
    }
  }
  return { tensors: identities.map((i) => i.tensor), bytesLeftOut: leftOut, bytesWritten: written };
}
