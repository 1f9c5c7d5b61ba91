// Deterministic primality for 64-bit integers and the reference's prime search.

const SMALL_PRIMES = [2n, 3n, 5n, 7n, 11n, 13n, 17n, 19n, 23n, 29n, 31n, 37n];

function modPow(base: bigint, exp: bigint, mod: bigint): bigint {
  let result = 1n;
  let b = base % mod;
  let e = exp;
  while (e > 0n) {
    if (e & 1n) result = (result * b) % mod;
    b = (b * b) % mod;
    e >>= 1n;
  }
  return result;
}

/**
 * Miller-Rabin with the first twelve primes as bases: exact (no false positives) for
 * every n < 3.3e24, so for all 64-bit integers.
 */
export function isPrime(value: bigint | number): boolean {
  const n = BigInt(value);
  if (n < 2n) return false;
  for (const p of SMALL_PRIMES) {
    if (n === p) return true;
    if (n % p === 0n) return false;
  }
  let d = n - 1n;
  let s = 0;
  while ((d & 1n) === 0n) {
    d >>= 1n;
    s++;
  }
  outer: for (const a of SMALL_PRIMES) {
    let x = modPow(a, d, n);
    if (x === 1n || x === n - 1n) continue;
    for (let r = 1; r < s; r++) {
      x = (x * x) % n;
      if (x === n - 1n) continue outer;
    }
    return false;
  }
  return true;
}

/** The reference's find_next_prime: the smallest prime > start not in `seen`. */
export function findNextPrime(start: number, seen: Set<number>): number {
  for (let candidate = start + 1; ; candidate++) {
    if (!Number.isSafeInteger(candidate)) throw new RangeError(`prime search ran past 2^53 from ${start}`);
    if (!seen.has(candidate) && isPrime(candidate)) return candidate;
  }
}
