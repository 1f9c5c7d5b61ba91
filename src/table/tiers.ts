// How an Engram layer reads its table through a pager: the tier options, the prefetch
// ticket a forward accepts, and the row ids of one layer out of a model's hashed rows.
import type { Tensor } from '../core/tensor.js';
import { TablePager, type PagerOptions, type PagerStats, type TableFile } from './pager.js';
import { EngramTable } from './table.js';
import { describe } from '../core/validate.js';
import { tableIdentity, type TableIdentity } from './remote/identity.js';
import { RemoteTable } from './remote/remote-source.js';
import { strippedTableError, strippedTableIdentity } from './remote/stripped.js';
import type { RemoteStoreOptions } from './remote/store.js';

export type TableTier = 'device' | 'host' | 'file' | 'remote';
const TIERS: readonly TableTier[] = ['device', 'host', 'file', 'remote'];

/**
 * Where the table lives and what caches it. 'device' and 'host' without cacheBytes: the
 * table is read where it is (no pager). 'host' with cacheBytes: the table stays in RAM
 * and a cache of cacheBytes serves the gather (on CUDA that is the device cache; on the
 * CPU backend it emulates one, bandwidthGBps capping the copy rate like a PCIe link).
 * 'file': the table stays in its file and only cacheBytes of pages are held in memory.
 * 'remote': the table's pages live in a Redis Cluster (pushed there with `engram store
 * push`); cacheBytes of them are held here, fetched as prefetches ask (url, credentials,
 * tls and timeoutMs: see RemoteStoreOptions). Forwards must then be async.
 */
export interface TableTierOptions extends Partial<PagerOptions>, Partial<RemoteStoreOptions> {
  tier: TableTier;
  /**
   * 'host' only: copy the table out of its file mapping into this process's memory
   * (its bytes of RAM per process; reads no longer depend on the OS page cache).
   */
  copy?: boolean;
  /** With copy: called as the copy proceeds (bytes read so far, bytes in all). */
  onProgress?: (bytesRead: number, totalBytes: number) => void;
}

/** Default cache of a file-tier table: 1 GiB, or the whole table when smaller. */
export const DEFAULT_FILE_CACHE_BYTES = 2 ** 30;

export function requireTierOptions(name: string, value: unknown): TableTierOptions {
  if (value === null || typeof value !== 'object') throw new TypeError(`${name} must be an object { tier, cacheBytes, ... }, got ${describe(value)}`);
  const o = value as TableTierOptions;
  if (!TIERS.includes(o.tier)) throw new RangeError(`${name}.tier must be 'device', 'host', 'file' or 'remote', got ${describe(o.tier)}`);
  if (o.tier === 'remote' && o.url === undefined) throw new TypeError(`${name}.url is required for tier 'remote' (redis://host:port or rediss://host:port)`);
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
  /** The file of the scales, when not `path`. */
  scalesPath?: string;
  /** The table tensor's name in the file (what the remote tier's identity records). */
  tensor?: string;
}

/**
 * The file and offsets of a table loaded (unconverted) from a safetensors file; for a
 * table that checkpoint shards split by rows, one per row range of the table (each
 * range's rows and scales must lie in one file).
 */
export function tableFileOf(table: EngramTable, file: LoadedFile): TableFile | TableFile[] {
  const converted = () => new RangeError(`tier 'file' reads the table as stored in '${file.path}', but this layer holds a converted copy (another tableDtype)`);
  // Each stored tensor's parts with the table rows they hold.
  const ranges = (t: Tensor, path: string) => {
    let begin = 0;
    return (t.rowParts ?? [{ path, shape: t.shape, data: t.data, fileOffset: t.fileOffset }]).map((p) => {
      const r = { ...p, begin, end: begin + p.shape[0] };
      begin = r.end;
      return r;
    });
  };
  const dataRanges = ranges(file.data, file.path);
  const scaleRanges = table.dtype === 'f8e4m3' && file.scales !== undefined ? ranges(file.scales, file.scalesPath ?? file.path) : undefined;
  const rowBytes = table.rowBytes;
  let begin = 0;
  const out = table.parts.map((part): TableFile => {
    const end = begin + part.rows;
    const d = dataRanges.find((r) => r.begin <= begin && end <= r.end);
    const within = d !== undefined && part.region.buffer === d.data.buffer && part.region.byteOffset === d.data.byteOffset + (begin - d.begin) * rowBytes;
    if (!within) throw converted();
    const s = scaleRanges?.find((r) => r.begin <= begin && end <= r.end);
    if (scaleRanges !== undefined && (s === undefined || s.path !== d.path)) {
      throw new RangeError(`tier 'file' reads a table's rows and their scales from one file, but rows ${begin}..${end - 1} lie in '${d.path}' and their scales in '${s?.path}': use tier 'host'`);
    }
    if (d.fileOffset === undefined || (s !== undefined && s.fileOffset === undefined)) throw new TypeError(`the table tensors of '${d.path}' carry no file offsets`);
    const f: TableFile = {
      path: d.path,
      dtype: table.dtype,
      rows: part.rows,
      cols: table.cols,
      dataOffset: d.fileOffset + (begin - d.begin) * rowBytes,
      scalesOffset: s === undefined ? undefined : s.fileOffset! + (begin - s.begin) * (table.cols / 32),
    };
    begin = end;
    return f;
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
  if (tier.tier === 'remote') return pagerFor(table, options_, undefined, file);
  return pagerFor(table, options_, file === undefined ? undefined : tableFileOf(table, file));
}

const sourcePaths = (file: LoadedFile) => file.data.rowParts?.map((p) => p.path) ?? [file.path];

/**
 * The identity a remote table is stored under: the tensor, the headers of the files
 * holding it, a hash of sampled rows (for a stripped checkpoint, which has no rows, the
 * identity recorded when it was stripped).
 */
export function remoteIdentity(table: EngramTable, file: LoadedFile): TableIdentity {
  const tensor = file.tensor ?? 'table';
  const recorded = strippedTableIdentity(tensor, sourcePaths(file));
  if (recorded !== undefined) {
    if (recorded.dtype !== table.dtype || recorded.rows !== table.rows || recorded.cols !== table.cols) {
      throw new Error(`the stripped record of '${tensor}' describes a ${recorded.dtype} table of ${recorded.rows} x ${recorded.cols}, the file a ${table.dtype} one of ${table.rows} x ${table.cols}`);
    }
    return recorded;
  }
  return tableIdentity(table, tensor, sourcePaths(file));
}

/**
 * Refuses to read a stripped checkpoint's table (its bytes are holes: zeros) through any
 * tier but 'remote'. The loaders call it for every table they load, whatever the tier.
 */
export function refuseStrippedTable(file: LoadedFile | undefined, options: TableTierOptions | undefined): void {
  if (file === undefined || options?.tier === 'remote') return;
  const tensor = file.tensor ?? 'table';
  if (strippedTableIdentity(tensor, sourcePaths(file)) !== undefined) throw strippedTableError(tensor, file.path);
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
  refuseStrippedTable(file, options);
  if (options === undefined) return { table, pager: undefined };
  if (requireTierOptions('options', options).copy === true) {
    return { table: file === undefined ? table.copy() : EngramTable.readFile(tableFileOf(table, file), { onProgress: options.onProgress }), pager: undefined };
  }
  return { table, pager: layerPager(table, options, file, device, deviceIndex) };
}

/** A layer's pager counters; a clear error for a layer without a pager. */
export function pagerStatsOf(pager: TablePager | undefined): PagerStats {
  if (pager === undefined) throw new Error('this layer reads its table directly: there is no pager (see usePager, or the table option when loading)');
  return pager.stats();
}

/** A pager for `table` as the tier options ask, or undefined when it is read directly. */
function pagerFor(table: EngramTable, options: TableTierOptions, file: TableFile | TableFile[] | undefined, loaded?: LoadedFile): TablePager | undefined {
  if (options.tier === 'remote') {
    if (loaded === undefined) throw new TypeError("tier 'remote' needs a table loaded from its checkpoint (fromSafetensors / fromCheckpoint): its identity comes from there");
    const full = table.rows * TablePager.rowBytes(table.dtype, table.cols);
    const remote = new RemoteTable(options as RemoteStoreOptions, remoteIdentity(table, loaded));
    return TablePager.create(remote, { ...options, cacheBytes: options.cacheBytes ?? Math.min(full, DEFAULT_FILE_CACHE_BYTES) });
  }
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
