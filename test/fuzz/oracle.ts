// What every parser owes any input: a value, or an Error of our own words (TypeError,
// RangeError or Error naming what was wrong). V8's own messages mean a check is missing.
import { expect } from 'vitest';

const ENGINE_MESSAGES = [
  /^Invalid (typed )?array length/,
  /^Invalid string length/,
  /^Array buffer allocation failed/,
  /^Cannot (read|set) properties of/,
  /is not a function$/,
  /is not iterable/,
  /^Maximum call stack size exceeded/,
  /^Offset is outside the bounds/,
  /^Start offset .* is outside the bounds/,
  /^Unexpected (token|end of JSON)/,
  /Division by zero/,
  /^Cannot convert .* to a BigInt/,
  /^Cannot mix BigInt/,
];

/** Runs `f`; true when it returned. A throw that is not a clean library error fails the property. */
export function cleanOutcome(f: () => unknown): boolean {
  try {
    f();
    return true;
  } catch (err) {
    expect(err, `threw a non-Error: ${String(err)}`).toBeInstanceOf(Error);
    const e = err as Error;
    expect([Error, TypeError, RangeError].some((c) => e.constructor === c), `threw ${e.constructor.name}: ${e.message}`).toBe(true);
    // Our messages may quote a cause after naming what failed ("path 'x' is not a
    // tokenizer.json this library can read: <the tokenizer library's words>"): only the
    // part before the first ': ' must be ours.
    const own = e.message.split(': ')[0];
    for (const re of ENGINE_MESSAGES) expect(own, `an engine message leaked: ${e.stack}`).not.toMatch(re);
    expect(e.message.length).toBeGreaterThan(10);
    return false;
  }
}

/** Seconds each fuzz target runs (FUZZ_SECONDS; 10 by default, about 50 s in all). */
export const fuzzMilliseconds = Math.max(1, Number(process.env.FUZZ_SECONDS ?? 10)) * 1000;

/** fast-check parameters: as many runs as fit in the time, reproducible from FUZZ_SEED. */
export const fuzzParameters = {
  numRuns: Number.MAX_SAFE_INTEGER,
  interruptAfterTimeLimit: fuzzMilliseconds,
  ...(process.env.FUZZ_SEED ? { seed: Number(process.env.FUZZ_SEED) } : {}),
};
