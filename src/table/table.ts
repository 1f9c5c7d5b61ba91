// One concatenated Engram table (all heads of a layer), stored as fp32, bf16, fp16 or
// DeepSeek-V4.1's fp8-e4m3 with a UE8M0 scale per 32 channels of a row. Rows are
// decoded to fp32 inside the gather; the bytes are never expanded to a float copy.
// The bytes are a region of an ArrayBuffer (not a typed array), so a table may exceed
// the 2^32 elements a typed array can hold.
import { isByteRegion, MAX_VIEW_BYTES, regionBytes, type ByteRegion, type Tensor } from '../core/tensor.js';
import { markAsUntransferable } from 'node:worker_threads';
import { isFileMapped, MappedFile } from '../core/mapped-file.js';
import { native, TABLE_DTYPE_CODES, type NativeTableArgs } from '../native/index.js';
import { describe, requireInteger } from '../core/validate.js';

export type TableDtype = 'f32' | 'bf16' | 'f16' | 'f8e4m3';
export const TABLE_DTYPES: readonly TableDtype[] = ['f32', 'bf16', 'f16', 'f8e4m3'];
/** The table format of each safetensors dtype a table may be stored in. */
export const TABLE_TENSOR_DTYPES: Partial<Record<string, TableDtype>> = { F32: 'f32', BF16: 'bf16', F16: 'f16', F8_E4M3: 'f8e4m3' };
export const SCALE_BLOCK = 32;
/** Tables from this size up are allocated on transparent huge pages where the OS allows. */
const HUGE_PAGE_THRESHOLD = 64 * 2 ** 20;

export function bytesPerElement(dtype: TableDtype): number {
  return dtype === 'f32' ? 4 : dtype === 'f8e4m3' ? 1 : 2;
}

export function requireTableDtype(name: string, value: unknown): TableDtype {
  if (!TABLE_DTYPES.includes(value as TableDtype)) {
    throw new RangeError(`${name} must be one of ${TABLE_DTYPES.map((d) => `'${d}'`).join(', ')}, got ${describe(value)}`);
  }
  return value as TableDtype;
}

function checkGeometry(rows: number, cols: number, dtype: TableDtype): void {
  requireTableDtype('dtype', dtype);
  requireInteger('rows', rows, 1);
  requireInteger('cols', cols, 1, 1 << 20);
  if (dtype === 'f8e4m3' && cols % SCALE_BLOCK !== 0) {
    throw new RangeError(`cols must be a multiple of ${SCALE_BLOCK} for an fp8 table, got ${cols}`);
  }
}

function view(region: ByteRegion, what: string): Uint8Array {
  if (region.byteLength > MAX_VIEW_BYTES) throw new RangeError(`the ${what} is ${region.byteLength} bytes, more than one typed array can view: use .region`);
  return regionBytes(region, `the ${what}`);
}

/** What the addon takes for a region's buffer: the ArrayBuffer, or a mapped file's handle. */
export const nativeBuffer = (b: ByteRegion['buffer']) => (b instanceof MappedFile ? b.handle : (b as ArrayBuffer));

/** Most row ranges one table may be split into (the native view's limit). */
export const MAX_TABLE_PARTS = 64;

/** One row range of a table: its rows' bytes and (fp8) their UE8M0 scales. */
export interface TablePart {
  rows: number;
  region: ByteRegion;
  scaleRegion?: ByteRegion;
}

const plainRegion = (r: ByteRegion): ByteRegion => ({ buffer: r.buffer, byteOffset: r.byteOffset, byteLength: r.byteLength });

export class EngramTable {
  /** readAhead calls since one last met a cold page (0: the last did, so every call runs). */
  private warmReadAheads = 0;

  private constructor(
    readonly dtype: TableDtype,
    readonly rows: number,
    readonly cols: number,
    /**
     * The rows in order: one part, or several for a table that a checkpoint's shards
     * split by rows (each read where it lies; no copy joins them).
     */
    readonly parts: readonly TablePart[],
  ) {
    // Async forwards and the pager's copy thread read the rows while JS runs on. A table
    // is too large to copy per call (as async calls do with other arrays JS owns), so its
    // buffer is made untransferable instead: postMessage or structuredClone with a
    // transfer list then cannot detach it under them (Node 20 copies it; later versions
    // refuse the transfer). SharedArrayBuffers cannot be detached at all.
    for (const p of parts) {
      for (const r of [p.region, p.scaleRegion]) {
        if (r !== undefined && r.buffer instanceof ArrayBuffer) markAsUntransferable(r.buffer);
      }
    }
  }

  /** Channels per row (the same as cols). */
  get rowWidth(): number {
    return this.cols;
  }

  /** Whether the rows lie in several regions (see parts). */
  get isSplit(): boolean {
    return this.parts.length > 1;
  }

  private onePart(what: string): TablePart {
    if (this.parts.length > 1) {
      throw new RangeError(`this table is split by rows into ${this.parts.length} regions (a sharded checkpoint), so no single ${what} holds it: use .parts, or copy() it into one`);
    }
    return this.parts[0];
  }

  /** rows x cols elements, row-major, little-endian (a table in one region). */
  get region(): ByteRegion {
    return this.onePart('region').region;
  }

  /** fp8 only: rows x cols/32 UE8M0 codes (a table in one region). */
  get scaleRegion(): ByteRegion | undefined {
    return this.onePart('scale region').scaleRegion;
  }

  /** A zero-filled table. */
  static allocate(rows: number, cols: number, dtype: TableDtype = 'f32'): EngramTable {
    checkGeometry(rows, cols, dtype);
    const bytes = rows * cols * bytesPerElement(dtype);
    const buffer = new ArrayBuffer(bytes);
    // Huge pages before the first touch: random row reads then miss the TLB far less.
    if (bytes >= HUGE_PAGE_THRESHOLD) native().adviseHugePages(buffer);
    const region = { buffer, byteOffset: 0, byteLength: bytes };
    const scaleBytes = rows * (cols / SCALE_BLOCK);
    const scales = dtype === 'f8e4m3' ? { buffer: new ArrayBuffer(scaleBytes), byteOffset: 0, byteLength: scaleBytes } : undefined;
    return new EngramTable(dtype, rows, cols, [{ rows, region, scaleRegion: scales }]);
  }

  /**
   * Wraps existing bytes (a typed array or a region, e.g. of a memory-mapped checkpoint);
   * no copy. An ArrayBuffer given here is marked untransferable (see worker_threads'
   * markAsUntransferable): native work reads it while JS runs.
   */
  static fromBytes(data: ByteRegion, rows: number, cols: number, dtype: TableDtype, scales?: ByteRegion): EngramTable {
    checkGeometry(rows, cols, dtype);
    return new EngramTable(dtype, rows, cols, [checkedPart(data, scales, rows, cols, dtype, 'table')]);
  }

  /**
   * A table whose rows lie in several regions, in row order (e.g. the row ranges of a
   * table that model-parallel checkpoint shards split, each memory-mapped); no copy.
   */
  static fromParts(parts: ReadonlyArray<{ rows: number; data: ByteRegion; scales?: ByteRegion }>, cols: number, dtype: TableDtype): EngramTable {
    if (!Array.isArray(parts) || parts.length === 0) throw new TypeError(`parts must be a non-empty array of { rows, data, scales? }, got ${describe(parts)}`);
    if (parts.length > MAX_TABLE_PARTS) throw new RangeError(`parts has ${parts.length} row ranges; a table may be split into at most ${MAX_TABLE_PARTS}`);
    const checked = parts.map((p, i) => {
      if (p === null || typeof p !== 'object') throw new TypeError(`parts[${i}] must be { rows, data, scales? }, got ${describe(p)}`);
      checkGeometry(p.rows, cols, dtype);
      return checkedPart(p.data, p.scales, p.rows, cols, dtype, `parts[${i}]`);
    });
    const rows = checked.reduce((sum, p) => sum + p.rows, 0);
    return new EngramTable(dtype, rows, cols, checked);
  }

  /**
   * The table a state dict stores (`data` [rows, cols] and, for fp8, `scales`
   * [rows, cols/32]), read where it lies. Tensors that checkpoint shards split by rows
   * (rowParts) stay in their shards' mappings: the table is cut at every boundary of
   * either tensor (beyond MAX_TABLE_PARTS pieces the rows are joined in memory).
   */
  static fromStored(data: Tensor, scales: Tensor | undefined, rows: number, cols: number, dtype: TableDtype): EngramTable {
    const d = storedRanges(data, rows, cols * bytesPerElement(dtype), 'table');
    const s = dtype === 'f8e4m3' && scales !== undefined ? storedRanges(scales, rows, cols / SCALE_BLOCK, 'scale tensor') : undefined;
    const table = EngramTable.storedParts(d, s, data, scales, rows, cols, dtype);
    // Rows are read at hashed offsets: no readahead around each (a mapped table's faults).
    for (const r of table.parts.flatMap((p) => [p.region, p.scaleRegion])) {
      if (r !== undefined && r.byteLength >= 2 ** 20) native().adviseRandom({ buffer: nativeBuffer(r.buffer), byteOffset: r.byteOffset, byteLength: r.byteLength });
    }
    return table;
  }

  private static storedParts(d: StoredRange[], s: StoredRange[] | undefined, data: Tensor, scales: Tensor | undefined, rows: number, cols: number, dtype: TableDtype): EngramTable {
    if (d.length === 1 && (s === undefined || s.length === 1)) return EngramTable.fromBytes(d[0].data, rows, cols, dtype, s?.[0].data ?? scales?.data);
    const cuts = [...new Set([0, ...d.map((r) => r.end), ...(s ?? []).map((r) => r.end)])].sort((a, b) => a - b);
    if (cuts.length - 1 > MAX_TABLE_PARTS) return EngramTable.fromBytes(data.data, rows, cols, dtype, scales?.data);
    const parts = cuts.slice(1).map((end, i) => {
      const begin = cuts[i];
      return { rows: end - begin, data: sliceRows(d, begin, end, cols * bytesPerElement(dtype)), scales: s && sliceRows(s, begin, end, cols / SCALE_BLOCK) };
    });
    return EngramTable.fromParts(parts, cols, dtype);
  }

  /** Encodes fp32 values [rows, cols] as `dtype` (round to nearest even; fp8 with block scales). */
  static fromFloat32(values: Float32Array, rows: number, cols: number, dtype: TableDtype = 'f32'): EngramTable {
    if (!(values instanceof Float32Array)) throw new TypeError(`values must be a Float32Array, got ${describe(values)}`);
    if (values.length !== rows * cols) throw new RangeError(`values has ${values.length} elements but ${rows} x ${cols} needs ${rows * cols}`);
    return EngramTable.fromBytes(values, rows, cols, 'f32').convert(dtype);
  }

  /**
   * Seeded N(0, std^2) rows (nn.Embedding's init): the same bytes for any thread count and
   * on every CPU build (element i comes from a counter-based SplitMix64 stream at i, through
   * Box-Muller in plain float arithmetic), quantised as `dtype` asks. About 1 GB/s of fp8
   * on 2 AVX-512 cores.
   */
  static random(rows: number, cols: number, dtype: TableDtype, options: { seed?: number; std?: number; threads?: number } = {}): EngramTable {
    const t = EngramTable.allocate(rows, cols, dtype);
    native().fillRandom({
      ...t.nativeArgs(),
      seed: requireInteger('options.seed', options.seed ?? 0, 0),
      distribution: 'normal',
      scale: options.std ?? 1,
      threads: options.threads ?? 0,
    });
    return t;
  }

  /** The same rows in another storage format (always a new table). */
  convert(dtype: TableDtype, options: { threads?: number } = {}): EngramTable {
    requireTableDtype('dtype', dtype);
    const out = EngramTable.allocate(this.rows, this.cols, dtype);
    native().convertTable({
      ...this.nativeArgs(),
      dst: out.region.buffer as ArrayBuffer, // allocate() always gives ArrayBuffers
      dstByteOffset: 0,
      dstScales: out.scaleRegion?.buffer as ArrayBuffer | undefined,
      dstScalesByteOffset: 0,
      dstDtype: TABLE_DTYPE_CODES[dtype],
      threads: options.threads ?? 0,
    });
    return out;
  }

  /**
   * The same bytes in this process's memory (anonymous, on huge pages where allowed): a
   * table read out of its memory mapping once, so that its reads no longer depend on the
   * OS page cache. Bit for bit the same table.
   */
  copy(options: { threads?: number } = {}): EngramTable {
    const out = EngramTable.allocate(this.rows, this.cols, this.dtype);
    const pairs: Array<[ByteRegion, ByteRegion['buffer'], number]> = [];
    let row = 0;
    for (const part of this.parts) {
      pairs.push([part.region, out.region.buffer, row * this.rowBytes]);
      if (part.scaleRegion !== undefined) pairs.push([part.scaleRegion, out.scaleRegion!.buffer, row * (this.cols / SCALE_BLOCK)]);
      row += part.rows;
    }
    for (const [from, to, at] of pairs) {
      native().copyRegion({
        src: nativeBuffer(from.buffer),
        srcByteOffset: from.byteOffset,
        dst: to as ArrayBuffer, // allocate() always gives ArrayBuffers
        dstByteOffset: at,
        byteLength: from.byteLength,
        threads: options.threads ?? 0,
      });
    }
    return out;
  }

  /** Bytes of one stored row (without fp8 scales). */
  get rowBytes(): number {
    return this.cols * bytesPerElement(this.dtype);
  }

  /** Whether some of its rows lie in a memory-mapped file (read in place, faulted in on first use). */
  get mapped(): boolean {
    return this.parts.some((p) => isFileMapped(p.region.buffer));
  }

  /**
   * For rows in a memory-mapped file: starts reading the pages of these rows (and their
   * scales) on a worker thread and maps them, so that a gather of them later meets no
   * disk read and no page fault. The layers call it from prefetch() when they read a
   * mapped table without a pager. Resolves with the pages touched (0 for a table in
   * memory, or a call skipped); a hint, so it never rejects (a failed read fails the
   * gather instead).
   *
   * While the rows keep being found in the page cache it runs on every 16th call only:
   * on a warm cache it only moves page faults to another thread, which cost 3% of a
   * decode step on 2 cores (bench:pager-profile). A call that meets a cold page runs it
   * on every call again.
   */
  async readAhead(rowIds: Int32Array | BigInt64Array): Promise<number> {
    const mappedParts = this.parts.map((p, i) => ({ p, i })).filter(({ p }) => isFileMapped(p.region.buffer));
    if (mappedParts.length === 0) return 0;
    if (this.warmReadAheads > 0 && this.warmReadAheads++ % 16 !== 0) return 0;
    const begins: number[] = [];
    this.parts.reduce((at, p) => (begins.push(at), at + p.rows), 0);
    const calls: Array<Promise<{ pages: number; cold: boolean }>> = [];
    for (const { p, i } of mappedParts) {
      const rows: number[] = [];
      for (const id of rowIds) {
        const r = Number(id) - begins[i];
        if (r >= 0 && r < p.rows) rows.push(r);
      }
      if (rows.length === 0) continue;
      const local = Int32Array.from(rows);
      const regions: Array<[ByteRegion, number]> = [[p.region, this.rowBytes]];
      if (p.scaleRegion !== undefined && isFileMapped(p.scaleRegion.buffer)) regions.push([p.scaleRegion, this.cols / SCALE_BLOCK]);
      for (const [r, rowBytes] of regions) {
        // Started now, not in a microtask: a synchronous forward right after prefetch() runs
        // before any microtask. A refusal (a row outside the part) settles as a failed read.
        try {
          calls.push(native().adviseRowsAsync({ buffer: nativeBuffer(r.buffer), byteOffset: r.byteOffset, byteLength: r.byteLength, rowBytes, rows: local }));
        } catch (err) {
          calls.push(Promise.reject(err));
        }
      }
    }
    const settled = await Promise.allSettled(calls);
    const done = settled.flatMap((t) => (t.status === 'fulfilled' ? [t.value] : []));
    this.warmReadAheads = done.some((d) => d.cold) ? 0 : Math.max(1, this.warmReadAheads);
    return done.reduce((n, d) => n + d.pages, 0);
  }

  /**
   * A table read from its file into this process's memory with pread (`dataOffset`:
   * row 0; fp8: `scalesOffset`): the file's pages are never mapped here. An array of
   * files: a table split by rows across them, joined in order.
   */
  static readFile(
    file: { path: string; dtype: TableDtype; rows: number; cols: number; dataOffset: number; scalesOffset?: number } | ReadonlyArray<{ path: string; dtype: TableDtype; rows: number; cols: number; dataOffset: number; scalesOffset?: number }>,
    options: { threads?: number; onProgress?: (bytesRead: number, totalBytes: number) => void } = {},
  ): EngramTable {
    const files = Array.isArray(file) ? file : [file];
    if (options.onProgress !== undefined && typeof options.onProgress !== 'function') {
      throw new TypeError(`options.onProgress must be a function, got ${describe(options.onProgress)}`);
    }
    if (files.length === 0) throw new TypeError('file must be a table file or a non-empty array of them');
    const { dtype, cols } = files[0];
    for (const f of files) {
      if (f.dtype !== dtype || f.cols !== cols) throw new RangeError(`the files of one table must share dtype and cols: '${f.path}' has ${describe(f.dtype)} x ${describe(f.cols)}, '${files[0].path}' ${describe(dtype)} x ${describe(cols)}`);
      checkGeometry(f.rows, f.cols, f.dtype);
    }
    const out = EngramTable.allocate(files.reduce((sum, f) => sum + f.rows, 0), cols, dtype);
    const total = files.reduce((sum, f) => sum + f.rows * (out.rowBytes + (out.scaleRegion ? cols / SCALE_BLOCK : 0)), 0);
    let done = 0;
    // In chunks when progress is asked for (a 98 GB table takes minutes from disk).
    const chunk = options.onProgress === undefined ? Infinity : 256 * 2 ** 20;
    let row = 0;
    for (const f of files) {
      const parts: Array<[number | undefined, ByteRegion | undefined, number]> = [
        [f.dataOffset, out.region, row * out.rowBytes],
        [f.scalesOffset, out.scaleRegion, row * (cols / SCALE_BLOCK)],
      ];
      for (const [offset, to, at] of parts) {
        if (to === undefined) continue;
        requireInteger('file offset', offset, 0);
        const byteLength = to === out.region ? f.rows * out.rowBytes : f.rows * (cols / SCALE_BLOCK);
        for (let from = 0; from < byteLength; from += chunk) {
          const n = Math.min(chunk, byteLength - from);
          native().readFileRegion({ path: f.path, offset: offset! + from, byteLength: n, dst: to.buffer as ArrayBuffer, dstByteOffset: at + from, threads: options.threads ?? 0 });
          done += n;
          options.onProgress?.(done, total);
        }
      }
      row += f.rows;
    }
    return out;
  }

  /** Rows decoded to fp32 (the values the gather produces). */
  toFloat32(options: { threads?: number } = {}): Float32Array {
    const f32 = this.convert('f32', options);
    return new Float32Array(f32.region.buffer as ArrayBuffer, 0, this.rows * this.cols);
  }

  /** Rows `rowIds` decoded to fp32: [rowIds.length, cols] (into options.out when given). */
  gather(rowIds: Int32Array | BigInt64Array, options: { threads?: number; out?: Float32Array } = {}): Float32Array {
    if (!(rowIds instanceof Int32Array || rowIds instanceof BigInt64Array)) throw new TypeError(`rowIds must be an Int32Array or BigInt64Array, got ${describe(rowIds)}`);
    const n = rowIds.length * this.cols;
    if (options.out !== undefined && !(options.out instanceof Float32Array && options.out.length === n)) {
      throw new RangeError(`options.out must be a Float32Array of ${n} elements, got ${describe(options.out)}`);
    }
    const out = options.out ?? new Float32Array(n);
    native().gatherRows({ ...this.nativeArgs(), rowIds, tokens: rowIds.length, rowsPerToken: 1, out, threads: options.threads ?? 0 });
    return out;
  }

  /**
   * Maps every page of the table now. A memory-mapped table otherwise pays a page fault
   * on the first touch of each 4 KiB page (about 10 µs on some VMs): call it before
   * latency-sensitive serving or timing a table "in RAM" (it reads the whole table once).
   */
  prefault(): void {
    for (const r of this.parts.flatMap((p) => [p.region, p.scaleRegion])) {
      if (r !== undefined) native().prefaultRegion({ buffer: nativeBuffer(r.buffer), byteOffset: r.byteOffset, byteLength: r.byteLength });
    }
  }

  /** The row bytes as one Uint8Array (tables up to 4 GiB; larger ones: use `region`). */
  get data(): Uint8Array {
    return view(this.region, 'table');
  }

  /** fp8 only: the UE8M0 scale codes [rows, cols / 32]. */
  get scales(): Uint8Array | undefined {
    return this.scaleRegion === undefined ? undefined : view(this.scaleRegion, 'scale table');
  }

  get byteLength(): number {
    return this.parts.reduce((sum, p) => sum + p.region.byteLength + (p.scaleRegion?.byteLength ?? 0), 0);
  }

  /** @internal The table as the addon reads it. */
  nativeArgs(): NativeTableArgs {
    const first = this.parts[0];
    const args: NativeTableArgs = {
      table: nativeBuffer(first.region.buffer),
      tableByteOffset: first.region.byteOffset,
      tableScales: first.scaleRegion === undefined ? undefined : nativeBuffer(first.scaleRegion.buffer),
      tableScalesByteOffset: first.scaleRegion?.byteOffset ?? 0,
      tableDtype: TABLE_DTYPE_CODES[this.dtype],
      tableRows: this.rows,
      tableCols: this.cols,
    };
    if (this.parts.length > 1) {
      args.tableParts = this.parts.map((p) => ({
        rows: p.rows,
        table: nativeBuffer(p.region.buffer),
        tableByteOffset: p.region.byteOffset,
        tableScales: p.scaleRegion === undefined ? undefined : nativeBuffer(p.scaleRegion.buffer),
        tableScalesByteOffset: p.scaleRegion?.byteOffset ?? 0,
      }));
    }
    return args;
  }
}

/** The row ranges a stored tensor's bytes lie in (its shards' parts, or one), checked whole. */
interface StoredRange {
  begin: number;
  end: number;
  data: ByteRegion;
}

function storedRanges(t: Tensor, rows: number, rowBytes: number, what: string): StoredRange[] {
  if (t.rowParts === undefined) return [{ begin: 0, end: rows, data: t.data }]; // checked where it is wrapped
  let at = 0;
  const out = t.rowParts.map((p) => {
    const n = p.shape[0];
    if (!Number.isInteger(n) || n < 1 || p.data.byteLength !== n * rowBytes) {
      throw new RangeError(`a ${what} part of ${describe(n)} rows has ${p.data.byteLength} bytes, expected ${n} x ${rowBytes}`);
    }
    const r = { begin: at, end: at + n, data: p.data };
    at += n;
    return r;
  });
  if (at !== rows) throw new RangeError(`the ${what} parts hold ${at} rows, the table has ${rows}`);
  return out;
}

/** Rows [begin, end) of ranges that cover them within one range (cuts include every range boundary). */
function sliceRows(ranges: StoredRange[], begin: number, end: number, rowBytes: number): ByteRegion {
  const r = ranges.find((x) => x.begin <= begin && end <= x.end)!;
  return { buffer: r.data.buffer, byteOffset: r.data.byteOffset + (begin - r.begin) * rowBytes, byteLength: (end - begin) * rowBytes };
}

function checkedPart(data: ByteRegion, scales: ByteRegion | undefined, rows: number, cols: number, dtype: TableDtype, what: string): TablePart {
  if (!isByteRegion(data)) throw new TypeError(`${what} data must be a typed array or { buffer, byteOffset, byteLength }, got ${describe(data)}`);
  const want = rows * cols * bytesPerElement(dtype);
  if (data.byteLength !== want) throw new RangeError(`${what} data has ${data.byteLength} bytes but ${rows} x ${cols} ${dtype} needs ${want}`);
  if (dtype === 'f8e4m3') {
    const need = rows * (cols / SCALE_BLOCK);
    if (!isByteRegion(scales) || scales.byteLength !== need) {
      throw new RangeError(`an fp8 table needs ${need} UE8M0 scale bytes${what === 'table' ? '' : ` for ${what}`}, got ${describe(scales)}`);
    }
  }
  return { rows, region: plainRegion(data), scaleRegion: dtype === 'f8e4m3' ? plainRegion(scales!) : undefined };
}
