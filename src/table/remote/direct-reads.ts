// The remote tier's fast path for page reads: one plain connection per node, MGETs written
// together and their replies read as views of the received bytes. ioredis stays the store's
// client for everything else and for every read this path does not answer: it follows
// failovers, redirections and reconnects. A fetch of ~1,360 one-row pages over 128 groups
// took half the time this way on a 2-core machine (ioredis builds a command object, a
// promise and a key-slot check per MGET and a Buffer per value; here a group costs a few
// string appends and a subarray per value).
//
// The rule that keeps it safe: anything unexpected (an error reply such as MOVED or
// CLUSTERDOWN, a refused or lost connection, bytes that are not RESP, no answer in time)
// hands the groups concerned back to the caller, who reads them through ioredis. A node
// whose connection failed is left alone for a while, so a dead node costs no connect
// attempt per fetch. A link no read has used for a while is closed: after a failover the
// demoted master is asked nothing more, and its connection would otherwise stay open
// until the store closes.
import net from 'node:net';
import tls from 'node:tls';

import { encodeCommand, RespErrorReply, RespProtocolError, RespReplyParser, type RespReply } from './resp.js';

export interface DirectReadOptions {
  username?: string;
  password?: string;
  tls?: tls.ConnectionOptions;
  /** A request with no reply after this long drops its connection (its groups go back to the caller). */
  replyTimeoutMs: number;
  /** A link with no request for this long is closed (default IDLE_CLOSE_MS). */
  idleCloseMs?: number;
}

type Waiter = (reply: RespReply | Error) => void;

/** How long a node whose connection failed is skipped. */
const NODE_BACKOFF_MS = 1000;
/** How long an unused link stays open. */
export const IDLE_CLOSE_MS = 30_000;

class NodeLink {
  private readonly socket: net.Socket;
  private readonly waiting: Waiter[] = [];
  private readonly parser: RespReplyParser;
  private timer: NodeJS.Timeout | undefined;
  private lastProgress = 0;
  /** When a request was last written (performance.now()). */
  lastUse = performance.now();
  closed = false;

  constructor(
    host: string,
    port: number,
    private readonly options: DirectReadOptions,
    private readonly onClosed: (link: NodeLink, failed: boolean) => void,
  ) {
    this.parser = new RespReplyParser((reply) => this.waiting.shift()?.(reply));
    this.socket = options.tls ? tls.connect({ ...options.tls, host, port, servername: options.tls.servername ?? (net.isIP(host) ? undefined : host) }) : net.connect({ host, port });
    this.socket.setNoDelay(true);
    this.socket.on('data', (chunk: Buffer) => {
      this.lastProgress = performance.now();
      try {
        this.parser.feed(chunk);
      } catch (e) {
        this.close(e instanceof RespProtocolError ? e : new RespProtocolError(String(e)));
      }
    });
    this.socket.on('error', (e) => this.close(e));
    this.socket.on('close', () => this.close(new Error('the connection closed')));
    if (options.password !== undefined) {
      const auth = options.username !== undefined ? ['AUTH', options.username, options.password] : ['AUTH', options.password];
      // A refused AUTH: the link is useless; ioredis reports the failure with its own words.
      this.request(encodeCommand(auth), 1, (r) => {
        if (r instanceof Error || r instanceof RespErrorReply) this.close(new Error('AUTH refused'));
      });
    }
  }

  /** Writes `payload` (`count` commands) and calls `onReply` once per command, in order. */
  request(payload: string, count: number, onReply: Waiter): void {
    if (this.closed) {
      for (let i = 0; i < count; i++) onReply(new Error('the connection closed'));
      return;
    }
    for (let i = 0; i < count; i++) this.waiting.push(onReply);
    this.lastProgress = this.lastUse = performance.now();
    this.socket.write(payload);
    this.armTimer();
  }

  // One timer per link: a link that has waited replyTimeoutMs without a byte arriving is
  // dropped. (A large reply that keeps arriving is not cut short.)
  private armTimer(): void {
    if (this.timer !== undefined || this.closed) return;
    const check = () => {
      this.timer = undefined;
      if (this.closed || this.waiting.length === 0) return;
      const idle = performance.now() - this.lastProgress;
      if (idle >= this.options.replyTimeoutMs) this.close(new Error(`no reply within ${this.options.replyTimeoutMs} ms`));
      else this.timer = setTimeout(check, this.options.replyTimeoutMs - idle);
    };
    this.timer = setTimeout(check, this.options.replyTimeoutMs);
  }

  /** True when no reply is awaited. */
  get idle(): boolean {
    return this.waiting.length === 0;
  }

  /** Closes the link; `failed`: false for a link closed on purpose (idle, or the store closed). */
  close(why: Error, failed = true): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.timer);
    this.socket.destroy();
    const left = this.waiting.splice(0);
    for (const w of left) w(why);
    this.onClosed(this, failed);
  }
}

export interface DirectReadStats {
  /** MGETs answered by the direct path, and those handed back to ioredis. */
  direct: number;
  handedBack: number;
}

/** Direct connections to the nodes a store reads pages from, by `host:port`. */
export class DirectReads {
  private readonly links = new Map<string, NodeLink>();
  private readonly skipUntil = new Map<string, number>();
  private closed = false;
  private sweeper: NodeJS.Timeout | undefined;
  readonly stats: DirectReadStats = { direct: 0, handedBack: 0 };

  constructor(private readonly options: DirectReadOptions) {}

  /** The nodes with an open link (`host:port`). */
  get linkedNodes(): string[] {
    return [...this.links.keys()];
  }

  // While any link is open, a timer (which keeps no process alive) closes those unused
  // for idleCloseMs.
  private sweepIdle(): void {
    if (this.sweeper !== undefined || this.closed) return;
    const idleMs = this.options.idleCloseMs ?? IDLE_CLOSE_MS;
    this.sweeper = setTimeout(() => {
      this.sweeper = undefined;
      const now = performance.now();
      for (const l of [...this.links.values()]) {
        if (l.idle && now - l.lastUse >= idleMs) l.close(new Error(`unused for ${idleMs} ms`), false);
      }
      if (this.links.size > 0) this.sweepIdle();
    }, idleMs / 2);
    this.sweeper.unref();
  }

  private link(node: string): NodeLink | undefined {
    if (this.closed) return undefined;
    const open = this.links.get(node);
    if (open !== undefined) return open;
    if ((this.skipUntil.get(node) ?? 0) > performance.now()) return undefined;
    const colon = node.lastIndexOf(':');
    const host = node.slice(0, colon).replace(/^\[|\]$/g, '');
    const port = Number(node.slice(colon + 1));
    if (colon <= 0 || !Number.isInteger(port)) return undefined;
    const created = new NodeLink(host, port, this.options, (l, failed) => {
      if (this.links.get(node) === l) this.links.delete(node);
      if (failed) this.skipUntil.set(node, performance.now() + NODE_BACKOFF_MS);
    });
    this.links.set(node, created);
    this.sweepIdle();
    return created;
  }

  /**
   * Reads each group of keys with one MGET on the node `nodeOf(group)` names (all of a
   * node's MGETs in one write), filling `values` (indexed as `keys`). Resolves with the
   * groups it did not read, for the caller to read another way.
   */
  async read(keys: readonly string[], groups: readonly number[][], nodeOf: (group: number[]) => string | undefined, values: Array<Buffer | null>): Promise<number[][]> {
    const byNode = new Map<string, number[][]>();
    const left: number[][] = [];
    for (const g of groups) {
      const node = nodeOf(g);
      if (node === undefined) {
        left.push(g);
        continue;
      }
      const list = byNode.get(node);
      if (list === undefined) byNode.set(node, [g]);
      else list.push(g);
    }
    const sent: Array<Promise<void>> = [];
    for (const [node, list] of byNode) {
      const link = this.link(node);
      if (link === undefined) {
        left.push(...list);
        continue;
      }
      let payload = '';
      for (const g of list) {
        payload += `*${g.length + 1}\r\n$4\r\nMGET\r\n`;
        for (const i of g) payload += `$${Buffer.byteLength(keys[i])}\r\n${keys[i]}\r\n`;
      }
      sent.push(
        new Promise<void>((resolve) => {
          let n = 0;
          link.request(payload, list.length, (reply) => {
            const g = list[n++];
            if (Array.isArray(reply) && reply.length === g.length) {
              for (let j = 0; j < g.length; j++) values[g[j]] = reply[j];
              this.stats.direct++;
            } else {
              left.push(g);
              this.stats.handedBack++;
            }
            if (n === list.length) resolve();
          });
        }),
      );
    }
    await Promise.all(sent);
    return left;
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.sweeper);
    for (const l of [...this.links.values()]) l.close(new Error('the store was closed'), false);
    this.links.clear();
  }
}
