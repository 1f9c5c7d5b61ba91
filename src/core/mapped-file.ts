// A file of any size mapped into memory by the addon (private, copy-on-write). Node can
// only view 4 GiB of external memory per ArrayBuffer, so the mapping itself stays native:
// JS holds this object, takes ArrayBuffer views of up to 4 GiB, and hands the whole
// mapping (with an offset) to kernels that read a bigger region, such as a 98 GB table.
import fs from 'node:fs';

import { native, type NativeMappedFile } from '../native/index.js';
import { describe } from './validate.js';

/** Largest external ArrayBuffer Node creates. */
export const MAX_EXTERNAL_BYTES = 2 ** 32;

// ArrayBuffers over a file's mapping (mapFileBuffer, MappedFile.view): their pages come
// from the file on first use, which prefetch can do ahead (EngramTable.readAhead).
const fileMapped = new WeakSet<ArrayBufferLike>();

/** @internal Whether `buffer` is memory-mapped from a file (a MappedFile, or an ArrayBuffer over one). */
export function isFileMapped(buffer: ArrayBufferLike | MappedFile): boolean {
  return buffer instanceof MappedFile || fileMapped.has(buffer);
}

/** @internal The whole file (at most 4 GiB) as an ArrayBuffer over a private mapping. */
export function mapFileBuffer(path: string): ArrayBuffer {
  const buffer = native().mapFile(path);
  fileMapped.add(buffer);
  return buffer;
}

export class MappedFile {
  private constructor(
    /** @internal the addon's handle */
    readonly handle: NativeMappedFile,
    readonly path: string,
    readonly byteLength: number,
  ) {}

  static open(path: string): MappedFile {
    if (typeof path !== 'string') throw new TypeError(`path must be a string, got ${describe(path)}`);
    const handle = native().mapFileHandle(path);
    return new MappedFile(handle, path, native().mappedFileSize(handle));
  }

  /** @internal Native memory the addon handed out by handle (e.g. a pager's cache). */
  static fromHandle(handle: NativeMappedFile, label: string): MappedFile {
    return new MappedFile(handle, label, native().mappedFileSize(handle));
  }

  /** An ArrayBuffer over [offset, offset + length) of the mapping (at most 4 GiB); it keeps the mapping alive. */
  view(offset: number, length: number): ArrayBuffer {
    if (!(Number.isSafeInteger(offset) && Number.isSafeInteger(length) && offset >= 0 && length >= 0 && offset + length <= this.byteLength)) {
      throw new RangeError(`view [${offset}, ${offset + length}) is outside the ${this.byteLength} bytes of '${this.path}'`);
    }
    if (length > MAX_EXTERNAL_BYTES) throw new RangeError(`a view of ${length} bytes is over the 4 GiB an ArrayBuffer can hold here`);
    const view = native().mappedFileView(this.handle, offset, length);
    fileMapped.add(view);
    return view;
  }

  /**
   * Asks the OS to drop the file's cached pages (those no process maps), so the next
   * reads come from the disk: for cold-cache measurements. Whether the advice was taken.
   */
  static dropPageCache(path: string): boolean {
    if (typeof path !== 'string') throw new TypeError(`path must be a string, got ${describe(path)}`);
    return native().dropFileCache(path);
  }

  /** The file's size, without mapping it. */
  static sizeOf(path: string): number {
    return fs.statSync(path).size;
  }
}
