// What both Engram layers share: where they run, their weights (swapped whole, never edited
// in place, so a failed load keeps the old ones), the table read directly or through a
// pager, and those weights on a CUDA device, uploaded once per load or pager change, on the
// calling thread for a sync forward or on a worker for an async one.
import { resolveDevice } from '../../core/devices.js';
import { describe, requireDevice, requireInteger, type Device } from '../../core/validate.js';
import type { PagerStats, PagerTicket, TablePager } from '../../table/pager.js';
import type { EngramTable } from '../../table/table.js';
import { pagerStatsOf, tableTier, type LoadedFile, type TableTierOptions } from '../../table/tiers.js';

/** One load's device weights: `handle` once uploaded, `pending` while an async upload runs. */
interface DeviceUpload<H> {
  weights: object;
  pager: TablePager | undefined;
  handle?: H;
  pending?: Promise<H>;
}

export abstract class PagedLayer<W extends { table: EngramTable }, H, UploadArgs> {
  /** Where forward runs: 'cpu' or 'cuda' (weights copied to the device at the first forward after a load). */
  readonly device: 'cpu' | 'cuda';
  readonly deviceIndex: number;
  protected weights: W | undefined;
  protected tablePager: TablePager | undefined;
  /** @internal Where the current table was loaded from (set by the loaders; what `engram store push` reads). */
  tableSource: LoadedFile | undefined;
  private deviceUpload: DeviceUpload<H> | undefined;

  protected constructor(options: { device?: Device; deviceIndex?: number }) {
    if (options === null || typeof options !== 'object') throw new TypeError(`options must be an object, got ${describe(options)}`);
    this.deviceIndex = options.deviceIndex === undefined ? 0 : requireInteger('options.deviceIndex', options.deviceIndex, 0, 1024);
    this.device = resolveDevice(requireDevice('options.device', options.device), this.deviceIndex);
  }

  /** "this DeepSeek-V4.1 Engram layer has no weights yet: ..." */
  protected abstract missingWeightsMessage(): string;
  /** The native upload's arguments for weights `w` (with the table, or without it for a CUDA pager). */
  protected abstract uploadArgs(w: W): UploadArgs;
  protected abstract uploadNow(args: UploadArgs): H;
  protected abstract uploadOnWorker(args: UploadArgs): Promise<H>;

  protected requireWeights(): W {
    if (this.weights === undefined) throw new Error(this.missingWeightsMessage());
    return this.weights;
  }

  /** Swaps in new weights (checked and built by the caller); a pager of the old table is dropped. */
  protected swapWeights(w: W): void {
    this.weights = w;
    this.tableSource = undefined;
    this.tablePager = undefined;
    this.deviceUpload = undefined;
  }

  /** The table in its storage format. */
  get table(): EngramTable {
    return this.requireWeights().table;
  }

  /**
   * Reads the table through a pager as `options` ask ('host' with cacheBytes: the table
   * stays in RAM behind a cache; 'file': it stays in its file), or directly again
   * (undefined). Loading other weights detaches it.
   */
  usePager(options: TableTierOptions | undefined, file: LoadedFile | undefined = this.tableSource): TablePager | undefined {
    const w = this.requireWeights();
    const { table, pager } = tableTier(w.table, options, file, this.device, this.deviceIndex);
    this.weights = { ...w, table };
    this.tablePager = pager;
    this.deviceUpload = undefined; // uploaded again: with the table, or without it for a CUDA pager
    return pager;
  }

  /**
   * Remote tier: resolves once the store is reached, authenticated and holds this
   * layer's table; rejects with why not (a wrong password, TLS settings, a table pushed
   * from another checkpoint). Await it before the first forward to fail early. Other
   * tiers: resolves at once.
   */
  remoteReady(): Promise<void> {
    return this.tablePager?.ready() ?? Promise.resolve();
  }

  /** Closes the remote tier's connection, if any (a process with one open does not exit). */
  async close(): Promise<void> {
    await this.tablePager?.close();
  }

  /**
   * What prefetch does for the table: the pager's ticket for these rows (copies under
   * way); for a table read in place from a memory-mapped file, no ticket, but the rows'
   * pages read ahead and mapped on a worker (EngramTable.readAhead), so the gather meets
   * neither a disk read nor a page fault. `rows` is only evaluated when needed.
   */
  protected prefetchTable(rows: () => Int32Array | BigInt64Array): PagerTicket | undefined {
    if (this.tablePager !== undefined) return this.tablePager.prefetch(rows());
    const table = this.weights?.table;
    if (table?.mapped) table.readAhead(rows()).catch(() => undefined); // a hint: the gather reports real failures
    return undefined;
  }

  /** The pager the gather reads through (undefined: the table is read directly). */
  get pager(): TablePager | undefined {
    return this.tablePager;
  }

  /** The pager's counters (lookups, hits, misses, bytes copied, stall...). */
  pagerStats(): PagerStats {
    return pagerStatsOf(this.tablePager);
  }

  resetPagerStats(): void {
    this.tablePager?.resetStats();
  }

  /** This load's upload record, or a fresh one when the weights or the pager changed. */
  private currentUpload(): DeviceUpload<H> {
    const w = this.requireWeights();
    const u = this.deviceUpload;
    if (u !== undefined && u.weights === w && u.pager === this.tablePager) return u;
    this.deviceUpload = { weights: w, pager: this.tablePager };
    return this.deviceUpload;
  }

  /** The weights on the CUDA device, uploaded here (on the calling thread) if not yet. */
  protected deviceWeightsNow(): H {
    const u = this.currentUpload();
    u.handle ??= this.uploadNow(this.uploadArgs(this.weights!));
    return u.handle;
  }

  /**
   * CUDA: starts uploading the weights on a worker thread when a forward needs them (the
   * first async forward after a load never copies a multi-GB table on the event loop);
   * undefined on the CPU or when they are on the device already. Concurrent forwards share
   * one upload; a load or pager change starts a new one (the old one resolves for its own
   * weights). A failed upload is tried again by the next forward.
   */
  protected startUpload(): Promise<H> | undefined {
    if (this.device !== 'cuda') return undefined;
    const u = this.currentUpload();
    if (u.handle !== undefined) return undefined;
    if (u.pending === undefined) {
      const pending = this.uploadOnWorker(this.uploadArgs(this.weights!)).then(
        (handle) => {
          u.handle ??= handle;
          u.pending = undefined;
          return u.handle;
        },
        (err: unknown) => {
          u.pending = undefined;
          throw err;
        },
      );
      pending.catch(() => undefined); // the forward awaiting it sees the error
      u.pending = pending;
    }
    return u.pending;
  }
}
