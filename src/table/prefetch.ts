// The one prefetch ticket of the library, for a layer and for a model alike: a call's rows
// hashed ahead, and the pages they need pinned in each layer's pager (copies under way),
// used once by the forward it is given to, or released unused.
import type { PagerTicket } from './pager.js';
import { describe, type IdArray } from '../core/validate.js';

/** Row ids hashed for one call: [tokens, stride] with a layer's ids at `offset` (all of them for a model). */
export interface HashedRows {
  rowIds: Int32Array | BigInt64Array;
  stride: number;
  offset: number;
  /** The n-gram history after the call (for the next chunk). */
  history: Int32Array;
}

/** What a ticket was prefetched for: the call (ids and shape) and its context (history, mask). */
export interface PrefetchKey {
  call: string;
  context: string;
}

const listText = (a: ArrayLike<unknown> | undefined) => (a === undefined ? '-' : Array.from(a, (v) => String(Number(v))).join(','));

export function prefetchKey(inputIds: IdArray, shape: [number, number], context: { history?: ArrayLike<number>; tokenMask?: ArrayLike<number | boolean> } = {}): PrefetchKey {
  return { call: `${shape.join('x')}|${listText(inputIds as ArrayLike<unknown>)}`, context: `${listText(context.history)}|${listText(context.tokenMask)}` };
}

export class Prefetch {
  private used = false;
  private taken = false;

  /** @internal */
  constructor(
    /** @internal The layer or model whose prefetch() made it. */ readonly owner: object,
    /** @internal */ readonly key: PrefetchKey,
    readonly shape: [number, number],
    /** @internal */ readonly rows: HashedRows,
    /** @internal Each layer's pager ticket (undefined for a layer that reads its table directly). */
    readonly tickets: ReadonlyMap<number, PagerTicket | undefined>,
  ) {}

  /** The pager's ticket of a one-layer prefetch (undefined when the layer reads its table directly). */
  get ticket(): PagerTicket | undefined {
    return this.tickets.size === 1 ? this.tickets.values().next().value : undefined;
  }

  get isUsed(): boolean {
    return this.used;
  }

  /**
   * Resolves once every layer's pages are in its cache (off the event loop); rejects with
   * the copy's or fetch's error. For the remote tier: after it, a synchronous forward with
   * this ticket needs no wait. (The time spent here counts as the pager's stall.)
   */
  async arrived(): Promise<void> {
    if (this.used) throw new Error('this prefetch ticket was already used or released');
    await Promise.all([...this.tickets.values()].map((t) => (t === undefined ? undefined : t.pager.waitAsync(t))));
  }

  /**
   * @internal That `ticket` may serve this call of `owner`: a TypeError for a foreign one,
   * a RangeError naming what differs, an Error for one used already.
   */
  static check(ticket: unknown, owner: object, key: PrefetchKey, messages: { foreign: string; call: string; context: string }): Prefetch {
    if (!(ticket instanceof Prefetch) || ticket.owner !== owner) throw new TypeError(`${messages.foreign}, got ${describe(ticket)}`);
    if (ticket.key.call !== key.call) throw new RangeError(messages.call);
    if (ticket.key.context !== key.context) throw new RangeError(messages.context);
    if (ticket.used) throw new Error('options.ticket was already used or released');
    return ticket;
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

  /** @internal Releases one layer's pages (a model's forward that does not run that layer). */
  releaseLayer(layerId: number): void {
    this.tickets.get(layerId)?.release();
  }

  private releasePages(): void {
    for (const t of this.tickets.values()) t?.release();
  }
}
