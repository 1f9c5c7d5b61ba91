// How an Engram layer reads its table through a pager: the tier options, the prefetch
// ticket a forward accepts, and the row ids of one layer out of a model's hashed rows.
import type { Tensor } from './dtype.js';
import { TablePager, type PagerOptions, type PagerStats, type PagerTicket, type TableFile } from './pager.js';
import { EngramTable } from './table.js';
import { describe } from './validate.js';

export type TableTier = 'device' | 'host' | 'file';
const TIERS: readonly TableTier[] = ['device', 'host', 'file'];

/**
 * Where the table lives and what caches it. 'device' and 'host' without cacheBytes: the
 * table is read where it is (no pager). 'host' with cacheBytes: the table stays in RAM
 * and a cache of cacheBytes serves the gather (on CUDA that is the device cache; on the
 * CPU backend it emulates one, bandwidthGBps capping the copy rate like a PCIe link).
 * 'file': the table stays in its file and only cacheBytes of pages are held in memory.
 */
export interface TableTierOptions extends Partial<PagerOptions> {
  tier: TableTier;
  /**
   * 'host' only: copy the table out of its file mapping into this process's memory
   * (its bytes of RAM per process; reads no longer depend on the OS page cache).
   */
  copy?: boolean;
}

/** Default cache of a file-tier table: 1 GiB, or the whole table when smaller. */
export const DEFAULT_FILE_CACHE_BYTES = 2 ** 30;

export function requireTierOptions(name: string, value: unknown): TableTierOptions {
  if (value === null || typeof value !== 'object') throw new TypeError(`${name} must be an object { tier, cacheBytes, ... }, got ${describe(value)}`);
  const o = value as TableTierOptions;
  if (!TIERS.includes(o.tier)) throw new RangeError(`${name}.tier must be 'device', 'host' or 'file', got ${describe(o.tier)}`);
  if (o.copy !== undefined && typeof o.copy !== 'boolean') throw new TypeError(`${name}.copy must be a boolean, got ${describe(o.copy)}`);
  if (o.copy === true && (o.tier !== 'host' || o.cacheBytes !== undefined)) throw new RangeError(`${name}.copy goes with tier 'host' and no cacheBytes`);
  return o;
}

/** Where a loaded table's tensors lie in their file (or, split by rows, their files: rowParts). */
export interface LoadedFile {
  path: string;
  /** The table tensor and (fp8) its scales, as read from the file. */
  data: Tensor;
  scales?: Tensor;
}

/**
 * The file and offsets of a table loaded (unconverted) from a safetensors file; for a
 * table that checkpoint shards split by rows, one per shard (rows and scales of each
 * part in one file).
 */
export function tableFileOf(table: EngramTable, file: LoadedFile): TableFile | TableFile[] {
  const path = file.path;
  const converted = () => new RangeError(`tier 'file' reads the table as stored in '${path}', but this layer holds a converted copy (another tableDtype)`);
  const scaleParts = file.scales?.rowParts ?? (file.scales ? [{ path, shape: file.scales.shape, data: file.scales.data, fileOffset: file.scales.fileOffset }] : undefined);
  const dataParts = file.data.rowParts ?? [{ path, shape: file.data.shape, data: file.data.data, fileOffset: file.data.fileOffset }];
  if (table.parts.length !== dataParts.length) throw converted();
  const out = dataParts.map((d, i): TableFile => {
    const held = table.parts[i].region;
    if (held.buffer !== d.data.buffer || held.byteOffset !== d.data.byteOffset) throw converted();
    const s = scaleParts?.[i];
    if (table.dtype === 'f8e4m3' && (scaleParts?.length !== dataParts.length || s!.path !== d.path || s!.shape[0] !== d.shape[0])) {
      throw new RangeError(`tier 'file' reads each shard's rows and their scales from one file, but the scales of the table in '${d.path}' are split differently: use tier 'host'`);
    }
    if (d.fileOffset === undefined || (table.dtype === 'f8e4m3' && s!.fileOffset === undefined)) throw new TypeError(`the table tensors of '${d.path}' carry no file offsets`);
    return { path: d.path, dtype: table.dtype, rows: table.parts[i].rows, cols: table.cols, dataOffset: d.fileOffset, scalesOffset: table.dtype === 'f8e4m3' ? s!.fileOffset : undefined };
  });
  return out.length === 1 ? out[0] : out;
}

/**
 * The pager a layer's gather reads through, as the tier options ask (undefined: the table
 * is read directly). `file`: where the table was loaded from (tier 'file').
 */
export function layerPager(table: EngramTable, options: unknown, file: LoadedFile | undefined, device: 'cpu' | 'cuda', deviceIndex = 0): TablePager | undefined {
  const tier = requireTierOptions('options', options);
  if (tier.copy === true) throw new TypeError("options.copy asks for a copy of the table, not a pager: it goes with tier 'host' and no cacheBytes");
  // On CUDA the cache is device memory: pages come from the table pinned in host memory
  // (the paper's setting) or, for tier 'file', through pinned staging from the file.
  const options_ = device === 'cuda' ? { ...tier, device: 'cuda' as const, deviceIndex } : tier;
  return pagerFor(table, options_, file === undefined ? undefined : tableFileOf(table, file));
}

/**
 * What a layer's usePager(options) makes of its table: the table to keep (a copy in
 * process memory for `copy: true`, read from the file when there is one, else the same)
 * and the pager its gather reads through (undefined: read directly).
 */
export function tableTier(
  table: EngramTable,
  options: TableTierOptions | undefined,
  file: LoadedFile | undefined,
  device: 'cpu' | 'cuda',
  deviceIndex: number,
): { table: EngramTable; pager: TablePager | undefined } {
  if (options === undefined) return { table, pager: undefined };
  if (requireTierOptions('options', options).copy === true) {
    return { table: file === undefined ? table.copy() : EngramTable.readFile(tableFileOf(table, file)), pager: undefined };
  }
  return { table, pager: layerPager(table, options, file, device, deviceIndex) };
}

/** A layer's pager counters; a clear error for a layer without a pager. */
export function pagerStatsOf(pager: TablePager | undefined): PagerStats {
  if (pager === undefined) throw new Error('this layer reads its table directly: there is no pager (see usePager, or the table option when loading)');
  return pager.stats();
}

/** A ticket used at most once: by the forward that takes it, or released unused. */
export abstract class OneShotTicket {
  private used = false;
  private taken = false;

  get isUsed(): boolean {
    return this.used;
  }

  /** @internal Marks it used; the forward releases the pages after its gather (finish). */
  take(): void {
    if (this.used) throw new Error('this prefetch ticket was already used or released');
    this.used = true;
    this.taken = true;
  }

  /**
   * Releases the pinned pages without running the layer. Nothing once a forward took the
   * ticket: that forward may still be reading them and releases them itself.
   */
  release(): void {
    if (this.taken) return;
    this.used = true;
    this.releasePages();
  }

  /** @internal The forward that took it is done with the pages. */
  finish(): void {
    this.releasePages();
  }

  protected abstract releasePages(): void;
}

/** A pager for `table` as the tier options ask, or undefined when it is read directly. */
function pagerFor(table: EngramTable, options: TableTierOptions, file: TableFile | TableFile[] | undefined): TablePager | undefined {
  if (options.tier !== 'file' && options.cacheBytes === undefined) return undefined;
  if (options.tier === 'file') {
    if (file === undefined) throw new TypeError("tier 'file' needs a table stored in a file: load the layer with fromSafetensors()");
    const full = table.rows * TablePager.rowBytes(table.dtype, table.cols);
    return TablePager.create(file, { ...options, cacheBytes: options.cacheBytes ?? Math.min(full, DEFAULT_FILE_CACHE_BYTES) });
  }
  return TablePager.create(table, { ...options, cacheBytes: options.cacheBytes! });
}

/** Copies one layer's rows out of rows hashed for several layers ([tokens, stride]). */
export function layerRowIds(rowIds: Int32Array | BigInt64Array, stride: number, offset: number, heads: number): Int32Array | BigInt64Array {
  if (stride === heads && offset === 0) return rowIds;
  const tokens = rowIds.length / stride;
  const out = rowIds instanceof Int32Array ? new Int32Array(tokens * heads) : new BigInt64Array(tokens * heads);
  for (let t = 0; t < tokens; t++) {
    for (let h = 0; h < heads; h++) out[t * heads + h] = rowIds[t * stride + offset + h];
  }
  return out;
}

/** What a layer's prefetch returns and its forward accepts: the hashed rows, and the pages pinned for them. */
export class EngramPrefetch extends OneShotTicket {
  /** @internal */
  constructor(
    /** @internal */ readonly owner: object,
    readonly shape: [number, number],
    /** @internal */ readonly inputIds: ArrayLike<number | bigint>,
    /** @internal */ readonly rows: { rowIds: Int32Array | BigInt64Array; stride: number; offset: number; history: Int32Array },
    /** @internal */ readonly historyBefore: Int32Array | undefined,
    /** The pager's ticket (undefined when the layer reads its table directly). */
    readonly ticket: PagerTicket | undefined,
  ) {
    super();
  }

  protected releasePages(): void {
    this.ticket?.release();
  }
}
