// numpy's default_rng (SeedSequence -> PCG64) and Generator.integers for int64, bit for
// bit, so that multipliers drawn by a PyTorch/numpy run can be drawn again here.
// Init-time only; BigInt keeps the 128-bit arithmetic readable.

const MASK32 = 0xffffffffn;
const MASK64 = 0xffffffffffffffffn;
const MASK128 = (1n << 128n) - 1n;

const INIT_A = 0x43b0d7e5n;
const MULT_A = 0x931e8875n;
const INIT_B = 0x8b51f9ddn;
const MULT_B = 0x58f38dedn;
const MIX_MULT_L = 0xca01f9ddn;
const MIX_MULT_R = 0x4973f715n;
const XSHIFT = 16n;
const POOL_SIZE = 4;

const PCG_MULTIPLIER = (0x2360ed051fc65da4n << 64n) | 0x4385df649fccf645n;

/** numpy.random.SeedSequence(entropy) for a non-negative integer entropy, no spawn key. */
export class SeedSequence {
  readonly pool: bigint[];

  constructor(entropy: bigint | number) {
    let e = BigInt(entropy);
    if (e < 0n) throw new RangeError(`SeedSequence entropy must be non-negative, got ${e}`);
    const words: bigint[] = [];
    do {
      words.push(e & MASK32);
      e >>= 32n;
    } while (e > 0n);
    let hashConst = INIT_A;
    const hashmix = (value: bigint): bigint => {
      let v = (value ^ hashConst) & MASK32;
      hashConst = (hashConst * MULT_A) & MASK32;
      v = (v * hashConst) & MASK32;
      return v ^ (v >> XSHIFT);
    };
    const mix = (x: bigint, y: bigint): bigint => {
      let r = (MIX_MULT_L * x - MIX_MULT_R * y) & MASK32;
      return r ^ (r >> XSHIFT);
    };
    const pool: bigint[] = [];
    for (let i = 0; i < POOL_SIZE; i++) pool.push(hashmix(i < words.length ? words[i] : 0n));
    for (let src = 0; src < POOL_SIZE; src++) {
      for (let dst = 0; dst < POOL_SIZE; dst++) {
        if (src !== dst) pool[dst] = mix(pool[dst], hashmix(pool[src]));
      }
    }
    for (let src = POOL_SIZE; src < words.length; src++) {
      for (let dst = 0; dst < POOL_SIZE; dst++) pool[dst] = mix(pool[dst], hashmix(words[src]));
    }
    this.pool = pool;
  }

  /** generate_state(n, uint64). */
  generateState64(n: number): bigint[] {
    let hashConst = INIT_B;
    const words32: bigint[] = [];
    for (let i = 0; i < 2 * n; i++) {
      let v = (this.pool[i % POOL_SIZE] ^ hashConst) & MASK32;
      hashConst = (hashConst * MULT_B) & MASK32;
      v = (v * hashConst) & MASK32;
      words32.push(v ^ (v >> XSHIFT));
    }
    const out: bigint[] = [];
    for (let i = 0; i < n; i++) out.push(words32[2 * i] | (words32[2 * i + 1] << 32n));
    return out;
  }
}

/** numpy's PCG64 bit generator (XSL-RR 128/64) with Generator.integers' bounded draws. */
export class Pcg64 {
  private state = 0n;
  private readonly inc: bigint;
  // numpy buffers the high half of a 64-bit draw for the next 32-bit draw.
  private has32 = false;
  private buf32 = 0n;

  constructor(seed: SeedSequence) {
    const [s0, s1, s2, s3] = seed.generateState64(4);
    const initState = (s0 << 64n) | s1;
    const initSeq = (s2 << 64n) | s3;
    this.inc = ((initSeq << 1n) | 1n) & MASK128;
    this.step();
    this.state = (this.state + initState) & MASK128;
    this.step();
  }

  private step(): void {
    this.state = (this.state * PCG_MULTIPLIER + this.inc) & MASK128;
  }

  next64(): bigint {
    this.step();
    const hi = this.state >> 64n;
    const lo = this.state & MASK64;
    const x = hi ^ lo;
    const rot = hi >> 58n;
    return ((x >> rot) | (x << ((64n - rot) & 63n))) & MASK64;
  }

  private next32(): bigint {
    if (this.has32) {
      this.has32 = false;
      return this.buf32;
    }
    const v = this.next64();
    this.has32 = true;
    this.buf32 = v >> 32n;
    return v & MASK32;
  }

  /** One value of Generator.integers(low, high, dtype=int64), i.e. in [low, high). */
  integer(low: bigint, high: bigint): bigint {
    if (high <= low) throw new RangeError(`integers: high (${high}) must exceed low (${low})`);
    const rng = high - 1n - low;
    if (rng === 0n) return low;
    if (rng <= MASK32) {
      if (rng === MASK32) return low + this.next32();
      const excl = rng + 1n;
      let m = this.next32() * excl;
      let left = m & MASK32;
      if (left < excl) {
        const threshold = (MASK32 - rng) % excl;
        while (left < threshold) {
          m = this.next32() * excl;
          left = m & MASK32;
        }
      }
      return low + (m >> 32n);
    }
    if (rng === MASK64) return low + this.next64();
    const excl = rng + 1n;
    let m = this.next64() * excl;
    let left = m & MASK64;
    if (left < excl) {
      const threshold = (MASK64 - rng) % excl;
      while (left < threshold) {
        m = this.next64() * excl;
        left = m & MASK64;
      }
    }
    return low + (m >> 64n);
  }

  /** Generator.integers(low, high, size, dtype=int64). */
  integers(low: bigint, high: bigint, size: number): bigint[] {
    const out: bigint[] = [];
    for (let i = 0; i < size; i++) out.push(this.integer(low, high));
    return out;
  }
}

/** numpy.random.default_rng(seed). */
export function defaultRng(seed: bigint | number): Pcg64 {
  return new Pcg64(new SeedSequence(seed));
}
