// RESP2, the part the remote tier's direct reads speak: commands out (arrays of bulk
// strings) and replies in (arrays of bulk strings for MGET, simple strings, errors,
// integers). Values are returned as views of the received bytes, never copied one by one:
// a fetch of a thousand small pages is a thousand subarrays of a few large buffers.

const CR = 13;

/** One command as RESP: `*<n>\r\n` then `$<len>\r\n<arg>\r\n` per argument. */
export function encodeCommand(args: readonly string[]): string {
  let out = `*${args.length}\r\n`;
  for (const a of args) out += `$${Buffer.byteLength(a)}\r\n${a}\r\n`;
  return out;
}

/** An error reply (`-ERR ...`, `-MOVED ...`): a value, not a broken stream. */
export class RespErrorReply {
  constructor(readonly message: string) {}
}

export type RespReply = Array<Buffer | null> | Buffer | string | number | null | RespErrorReply;

/** Thrown for bytes that are not a reply this reader expects: the connection must be dropped. */
export class RespProtocolError extends Error {}

/**
 * An incremental reply reader: feed it the socket's chunks, and it calls `onReply` once
 * per complete top-level reply, in order. A reply split over chunks waits until enough
 * bytes are in (known exactly for a bulk string's body), so each byte is copied at most
 * about twice however the stream is cut.
 */
export class RespReplyParser {
  private buf: Buffer = Buffer.alloc(0);
  private pos = 0;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  /** Bytes from `pos` needed before parsing can go on (0: try with whatever arrives). */
  private need = 0;
  private array: Array<Buffer | null> | null = null;
  private filled = 0;

  constructor(private readonly onReply: (reply: RespReply) => void) {}

  feed(chunk: Buffer): void {
    const available = this.buf.length - this.pos + this.pendingBytes + chunk.length;
    if (available < this.need) {
      this.pending.push(chunk);
      this.pendingBytes += chunk.length;
      return;
    }
    if (this.pos === this.buf.length && this.pendingBytes === 0) this.buf = chunk;
    else this.buf = Buffer.concat([this.buf.subarray(this.pos), ...this.pending, chunk]);
    this.pos = 0;
    this.pending = [];
    this.pendingBytes = 0;
    this.need = 0;
    this.parse();
  }

  /** The index of the CR of the line starting at `from`, or -1 when the line is incomplete. */
  private lineEnd(from: number): number {
    const b = this.buf;
    for (let i = from; i + 1 < b.length; i++) if (b[i] === CR) return b[i + 1] === 10 ? i : this.fail('a CR without LF');
    return -1;
  }

  private integer(from: number, to: number): number {
    const b = this.buf;
    let i = from;
    const negative = b[i] === 45; // '-'
    if (negative) i++;
    if (i >= to) this.fail('an empty length');
    let v = 0;
    for (; i < to; i++) {
      const d = b[i] - 48;
      if (d < 0 || d > 9) this.fail(`a non-digit in a length: '${b.toString('latin1', from, to)}'`);
      v = v * 10 + d;
    }
    return negative ? -v : v;
  }

  private fail(why: string): never {
    throw new RespProtocolError(`unexpected reply bytes: ${why}`);
  }

  private parse(): void {
    const b = this.buf;
    for (;;) {
      if (this.pos >= b.length) return;
      const type = b[this.pos];
      const eol = this.lineEnd(this.pos + 1);
      if (eol < 0) return; // the header line is incomplete
      if (this.array !== null) {
        // Inside an MGET reply: every element is a bulk string or a null.
        if (type !== 36) this.fail(`element type '${String.fromCharCode(type)}' in an array`); // '$'
        const value = this.bulk(eol);
        if (value === undefined) return;
        this.array[this.filled++] = value;
        if (this.filled === this.array.length) {
          const done = this.array;
          this.array = null;
          this.onReply(done);
        }
        continue;
      }
      switch (type) {
        case 42: { // '*'
          const n = this.integer(this.pos + 1, eol);
          this.pos = eol + 2;
          if (n < 0) this.onReply(null);
          else if (n === 0) this.onReply([]);
          else {
            this.array = new Array<Buffer | null>(n);
            this.filled = 0;
          }
          break;
        }
        case 36: { // '$'
          const value = this.bulk(eol);
          if (value === undefined) return;
          this.onReply(value);
          break;
        }
        case 43: { // '+'
          const text = b.toString('utf8', this.pos + 1, eol);
          this.pos = eol + 2;
          this.onReply(text);
          break;
        }
        case 45: { // '-'
          const text = b.toString('utf8', this.pos + 1, eol);
          this.pos = eol + 2;
          this.onReply(new RespErrorReply(text));
          break;
        }
        case 58: { // ':'
          const n = this.integer(this.pos + 1, eol);
          this.pos = eol + 2;
          this.onReply(n);
          break;
        }
        default:
          this.fail(`reply type '${String.fromCharCode(type)}'`);
      }
    }
  }

  /** The bulk string whose header line ends at `eol`, or undefined (and `need` set) while its body is incomplete. */
  private bulk(eol: number): Buffer | null | undefined {
    const len = this.integer(this.pos + 1, eol);
    if (len < 0) {
      this.pos = eol + 2;
      return null;
    }
    const end = eol + 2 + len;
    if (end + 2 > this.buf.length) {
      this.need = end + 2 - this.pos;
      return undefined;
    }
    if (this.buf[end] !== CR || this.buf[end + 1] !== 10) this.fail('a bulk string not ended by CRLF');
    const value = this.buf.subarray(eol + 2, end);
    this.pos = end + 2;
    return value;
  }
}
