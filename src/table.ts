// One concatenated Engram table (all heads of a layer), stored as fp32, bf16, fp16 or
// DeepSeek-V4.1's fp8-e4m3 with a UE8M0 scale per 32 channels of a row. Rows are
// decoded to fp32 inside the gather; the bytes are never expanded to a float copy.
// The bytes are a region of an ArrayBuffer (not a typed array), so a table may exceed
// the 2^32 elements a typed array can hold.
import { isByteRegion, MAX_VIEW_BYTES, regionBytes, type ByteRegion } from './dtype.js';
import { MappedFile } from './mapped-file.js';
import { native, TABLE_DTYPE_CODES, type NativeTableArgs } from './native.js';
import { describe, requireInteger } from './validate.js';

export type TableDtype = 'f32' | 'bf16' | 'f16' | 'f8e4m3';
export const TABLE_DTYPES: readonly TableDtype[] = ['f32', 'bf16', 'f16', 'f8e4m3'];
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

export class EngramTable {
  private constructor(
    readonly dtype: TableDtype,
    readonly rows: number,
    readonly cols: number,
    /** rows x cols elements, row-major, little-endian. */
    readonly region: ByteRegion,
    /** fp8 only: rows x cols/32 UE8M0 codes. */
    readonly scaleRegion: ByteRegion | undefined,
  ) {}

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
    return new EngramTable(dtype, rows, cols, region, scales);
  }

  /** Wraps existing bytes (a typed array or a region, e.g. of a memory-mapped checkpoint); no copy. */
  static fromBytes(data: ByteRegion, rows: number, cols: number, dtype: TableDtype, scales?: ByteRegion): EngramTable {
    checkGeometry(rows, cols, dtype);
    if (!isByteRegion(data)) throw new TypeError(`data must be a typed array or { buffer, byteOffset, byteLength }, got ${describe(data)}`);
    const want = rows * cols * bytesPerElement(dtype);
    if (data.byteLength !== want) throw new RangeError(`table data has ${data.byteLength} bytes but ${rows} x ${cols} ${dtype} needs ${want}`);
    if (dtype === 'f8e4m3') {
      const need = rows * (cols / SCALE_BLOCK);
      if (!isByteRegion(scales) || scales.byteLength !== need) {
        throw new RangeError(`an fp8 table needs ${need} UE8M0 scale bytes, got ${describe(scales)}`);
      }
    }
    const region = { buffer: data.buffer, byteOffset: data.byteOffset, byteLength: data.byteLength };
    const scaleRegion = dtype === 'f8e4m3' ? { buffer: scales!.buffer, byteOffset: scales!.byteOffset, byteLength: scales!.byteLength } : undefined;
    return new EngramTable(dtype, rows, cols, region, scaleRegion);
  }

  /** Encodes fp32 values [rows, cols] as `dtype` (round to nearest even; fp8 with block scales). */
  static fromFloat32(values: Float32Array, rows: number, cols: number, dtype: TableDtype = 'f32'): EngramTable {
    if (!(values instanceof Float32Array)) throw new TypeError(`values must be a Float32Array, got ${describe(values)}`);
    if (values.length !== rows * cols) throw new RangeError(`values has ${values.length} elements but ${rows} x ${cols} needs ${rows * cols}`);
    return EngramTable.fromBytes(values, rows, cols, 'f32').convert(dtype);
  }

  /** Seeded N(0, std^2) rows (nn.Embedding's init), identical for any thread count. */
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
    const pairs: Array<[ByteRegion, ByteRegion]> = [[this.region, out.region]];
    if (this.scaleRegion !== undefined) pairs.push([this.scaleRegion, out.scaleRegion!]);
    for (const [from, to] of pairs) {
      native().copyRegion({
        src: nativeBuffer(from.buffer),
        srcByteOffset: from.byteOffset,
        dst: to.buffer as ArrayBuffer, // allocate() always gives ArrayBuffers
        dstByteOffset: to.byteOffset,
        byteLength: from.byteLength,
        threads: options.threads ?? 0,
      });
    }
    return out;
  }

  /**
   * A table read from its file into this process's memory with pread (`dataOffset`:
   * row 0; fp8: `scalesOffset`): the file's pages are never mapped here.
   */
  static readFile(file: { path: string; dtype: TableDtype; rows: number; cols: number; dataOffset: number; scalesOffset?: number }, options: { threads?: number } = {}): EngramTable {
    const out = EngramTable.allocate(file.rows, file.cols, file.dtype);
    const parts: Array<[number | undefined, ByteRegion | undefined]> = [[file.dataOffset, out.region], [file.scalesOffset, out.scaleRegion]];
    for (const [offset, to] of parts) {
      if (to === undefined) continue;
      requireInteger('file offset', offset, 0);
      native().readFileRegion({ path: file.path, offset: offset!, byteLength: to.byteLength, dst: to.buffer as ArrayBuffer, dstByteOffset: to.byteOffset, threads: options.threads ?? 0 });
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
    native().gatherRows({ ...this.nativeArgs(), rowIds, tokens: rowIds.length, heads: 1, out, threads: options.threads ?? 0 });
    return out;
  }

  /**
   * Maps every page of the table now. A memory-mapped table otherwise pays a page fault
   * on the first touch of each 4 KiB page (about 10 µs on some VMs): call it before
   * latency-sensitive serving or timing a table "in RAM" (it reads the whole table once).
   */
  prefault(): void {
    for (const r of [this.region, this.scaleRegion]) {
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
    return this.region.byteLength + (this.scaleRegion?.byteLength ?? 0);
  }

  /** @internal The table as the addon reads it. */
  nativeArgs(): NativeTableArgs {
    return {
      table: nativeBuffer(this.region.buffer),
      tableByteOffset: this.region.byteOffset,
      tableScales: this.scaleRegion === undefined ? undefined : nativeBuffer(this.scaleRegion.buffer),
      tableScalesByteOffset: this.scaleRegion?.byteOffset ?? 0,
      tableDtype: TABLE_DTYPE_CODES[this.dtype],
      tableRows: this.rows,
      tableCols: this.cols,
    };
  }
}
