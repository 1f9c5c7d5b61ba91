import { describe, expect, it } from 'vitest';

import { defaultRng, findNextPrime, isPrime } from '../src/index.js';
import { fixture } from './helpers/fixtures.js';

describe('numpy default_rng(seed).integers(0, high, dtype=int64)', () => {
  const data = fixture<{ cases: Array<{ seed: string; high: string; values: string[] }> }>('numpy-integers.json');
  for (const c of data.cases) {
    it(`seed ${c.seed}, high ${c.high}`, () => {
      const got = defaultRng(BigInt(c.seed)).integers(0n, BigInt(c.high), c.values.length);
      expect(got.map(String)).toEqual(c.values);
    });
  }

  it('gives the reference multipliers of layer 1 (seed 0, 98,627 compressed ids)', () => {
    const half = ((2n ** 63n - 1n) / 98627n) / 2n;
    const got = defaultRng(10007).integers(0n, half, 3).map((r) => r * 2n + 1n);
    expect(got).toEqual([76993395940407n, 4862694818241n, 36129212583461n]);
  });

  it('refuses a negative seed and an empty range', () => {
    expect(() => defaultRng(-1)).toThrow(RangeError);
    expect(() => defaultRng(0).integer(5n, 5n)).toThrow(RangeError);
  });
});

describe('primality', () => {
  it('agrees with trial division below 20,000', () => {
    const sieve = new Uint8Array(20000).fill(1);
    sieve[0] = sieve[1] = 0;
    for (let i = 2; i * i < 20000; i++) if (sieve[i]) for (let j = i * i; j < 20000; j += i) sieve[j] = 0;
    for (let n = 0; n < 20000; n++) expect(isPrime(n), `n = ${n}`).toBe(sieve[n] === 1);
  });

  it('is exact on strong pseudoprimes and large primes', () => {
    expect(isPrime(3215031751n)).toBe(false); // strong pseudoprime to bases 2, 3, 5, 7
    expect(isPrime(3825123056546413051n)).toBe(false); // to bases 2..23
    expect(isPrime(2147483647n)).toBe(true);
    expect(isPrime(18446744073709551557n)).toBe(true); // largest 64-bit prime
    expect(isPrime(4294967297n)).toBe(false); // 641 * 6700417
  });

  it('searches past primes already taken', () => {
    const seen = new Set<number>();
    expect(findNextPrime(646399, seen)).toBe(646403);
    seen.add(646403);
    expect(findNextPrime(646399, seen)).toBe(646411);
  });
});
