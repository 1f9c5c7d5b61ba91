// One concatenated Engram table (all heads of a layer), stored as fp32, bf16, fp16 or
// DeepSeek-V4.1's fp8-e4m3 with a UE8M0 scale per 32 channels of a row. Rows are
// decoded to fp32 inside the gather; the bytes are never expanded to a float copy.
import { native, TABLE_DTYPE_CODES, type NativeTableArgs } from './native.js';
import { describe, requireInteger } from './validate.js';

export type TableDtype = 'f32' | 'bf16' | 'f16' | 'f8e4m3';
export const TABLE_DTYPES: readonly TableDtype[] = ['f32', 'bf16', 'f16', 'f8e4m3'];
export const SCALE_BLOCK = 32;

export function bytesPerElement(dtype: TableDtype): number {
  return dtype === 'f32' ? 4 : dtype === 'f8e4m3' ? 1 : 2;
}

export function requireTableDtype(name: string, value: unknown): TableDtype {
  if (!TABLE_DTYPES.includes(value as TableDtype)) {
    throw new RangeError(`${name} must be one of ${TABLE_DTYPES.map((d) => `'${d}'`).join(', ')}, got ${describe(value)}`);
  }
  return value as TableDtype;
}

export class EngramTable {
  private constructor(
    readonly dtype: TableDtype,
    readonly rows: number,
    readonly cols: number,
    /** rows x cols elements, row-major, little-endian. */
    readonly data: Uint8Array,
    /** fp8 only: rows x cols/32 UE8M0 codes. */
    readonly scales: Uint8Array | undefined,
  ) {}

  /** A zero-filled table. */
  static allocate(rows: number, cols: number, dtype: TableDtype = 'f32'): EngramTable {
    requireTableDtype('dtype', dtype);
    requireInteger('rows', rows, 1);
    requireInteger('cols', cols, 1, 1 << 20);
    if (dtype === 'f8e4m3' && cols % SCALE_BLOCK !== 0) {
      throw new RangeError(`cols must be a multiple of ${SCALE_BLOCK} for an fp8 table, got ${cols}`);
    }
    const data = new Uint8Array(rows * cols * bytesPerElement(dtype));
    const scales = dtype === 'f8e4m3' ? new Uint8Array(rows * (cols / SCALE_BLOCK)) : undefined;
    return new EngramTable(dtype, rows, cols, data, scales);
  }

  /** Wraps existing bytes (e.g. a memory-mapped checkpoint); no copy. */
  static fromBytes(data: Uint8Array, rows: number, cols: number, dtype: TableDtype, scales?: Uint8Array): EngramTable {
    requireTableDtype('dtype', dtype);
    requireInteger('rows', rows, 1);
    requireInteger('cols', cols, 1, 1 << 20);
    if (!(data instanceof Uint8Array)) throw new TypeError(`data must be a Uint8Array, got ${describe(data)}`);
    const want = rows * cols * bytesPerElement(dtype);
    if (data.byteLength !== want) throw new RangeError(`table data has ${data.byteLength} bytes but ${rows} x ${cols} ${dtype} needs ${want}`);
    if (dtype === 'f8e4m3') {
      if (cols % SCALE_BLOCK !== 0) throw new RangeError(`cols must be a multiple of ${SCALE_BLOCK} for an fp8 table, got ${cols}`);
      if (!(scales instanceof Uint8Array) || scales.byteLength !== rows * (cols / SCALE_BLOCK)) {
        throw new RangeError(`an fp8 table needs ${rows * (cols / SCALE_BLOCK)} UE8M0 scale bytes, got ${describe(scales)}`);
      }
    }
    return new EngramTable(dtype, rows, cols, data, dtype === 'f8e4m3' ? scales : undefined);
  }

  /** Encodes fp32 values [rows, cols] as `dtype` (round to nearest even; fp8 with block scales). */
  static fromFloat32(values: Float32Array, rows: number, cols: number, dtype: TableDtype = 'f32'): EngramTable {
    if (!(values instanceof Float32Array)) throw new TypeError(`values must be a Float32Array, got ${describe(values)}`);
    if (values.length !== rows * cols) throw new RangeError(`values has ${values.length} elements but ${rows} x ${cols} needs ${rows * cols}`);
    const f32 = EngramTable.fromBytes(new Uint8Array(values.buffer, values.byteOffset, values.byteLength), rows, cols, 'f32');
    return dtype === 'f32' ? EngramTable.fromBytes(new Uint8Array(f32.data), rows, cols, 'f32') : f32.convert(dtype);
  }

  /** Seeded N(0, std^2) rows (nn.Embedding's init), identical for any thread count. */
  static random(rows: number, cols: number, dtype: TableDtype, options: { seed?: number; std?: number; threads?: number } = {}): EngramTable {
    const t = EngramTable.allocate(rows, cols, dtype);
    native().fillRandom({
      dst: t.data,
      dstScales: t.scales,
      dtype: TABLE_DTYPE_CODES[dtype],
      rows,
      cols,
      seed: requireInteger('options.seed', options.seed ?? 0, 0),
      distribution: 'normal',
      scale: options.std ?? 1,
      threads: options.threads ?? 0,
    });
    return t;
  }

  /** The same rows in another storage format (a new table). */
  convert(dtype: TableDtype, options: { threads?: number } = {}): EngramTable {
    requireTableDtype('dtype', dtype);
    const out = EngramTable.allocate(this.rows, this.cols, dtype);
    native().convertTable({ ...this.nativeArgs(), dst: out.data, dstScales: out.scales, dstDtype: TABLE_DTYPE_CODES[dtype], threads: options.threads ?? 0 });
    return out;
  }

  /** Rows decoded to fp32 (the values the gather produces). */
  toFloat32(options: { threads?: number } = {}): Float32Array {
    const f32 = this.convert('f32', options);
    return new Float32Array(f32.data.buffer, f32.data.byteOffset, this.rows * this.cols);
  }

  /** Rows `rowIds` decoded to fp32: [rowIds.length, cols]. */
  gather(rowIds: Int32Array | BigInt64Array, options: { threads?: number } = {}): Float32Array {
    const out = new Float32Array(rowIds.length * this.cols);
    native().gatherRows({ ...this.nativeArgs(), rowIds, tokens: rowIds.length, heads: 1, out, threads: options.threads ?? 0 });
    return out;
  }

  get byteLength(): number {
    return this.data.byteLength + (this.scales?.byteLength ?? 0);
  }

  /** @internal The table as the addon reads it. */
  nativeArgs(): NativeTableArgs {
    return { table: this.data, tableScales: this.scales, tableDtype: TABLE_DTYPE_CODES[this.dtype], tableRows: this.rows, tableCols: this.cols };
  }
}
