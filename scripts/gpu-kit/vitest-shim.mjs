// The part of vitest's API the GPU suite uses, on Node's own test runner, so the suite
// runs on a machine with nothing but a node binary (the GPU kit). Matchers follow
// vitest's semantics; one the suite starts using that is missing here fails loudly.
import assert from 'node:assert/strict';
import * as nodeTest from 'node:test';
import { isDeepStrictEqual, inspect } from 'node:util';

const TEST_TIMEOUT_MS = 120_000;
const show = (v) => inspect(v, { depth: 4, maxArrayLength: 20, breakLength: Infinity });

function suite(name, fn, skip) {
  return nodeTest.describe(name, { skip: skip ? 'condition not met (see the log above)' : false }, fn);
}
export function describe(name, fn) {
  return suite(name, fn, false);
}
describe.skip = (name, fn) => suite(name, fn, true);
describe.skipIf = (condition) => (name, fn) => suite(name, fn, Boolean(condition));
describe.runIf = (condition) => (name, fn) => suite(name, fn, !condition);

function test(name, fn, options, skip) {
  const timeout = typeof options === 'number' ? options : (options?.timeout ?? TEST_TIMEOUT_MS);
  // A wrapper of arity 0: node:test would read a one-argument function as callback style.
  return nodeTest.it(name, { timeout, skip: skip ? 'condition not met' : false }, () => fn());
}
export function it(name, fn, options) {
  return test(name, fn, options, false);
}
it.skip = (name, fn, options) => test(name, fn, options, true);
it.skipIf = (condition) => (name, fn, options) => test(name, fn, options, Boolean(condition));
it.runIf = (condition) => (name, fn, options) => test(name, fn, options, !condition);
export { it as test };

export const beforeAll = (fn) => nodeTest.before(() => fn());
export const afterAll = (fn) => nodeTest.after(() => fn());
export const beforeEach = (fn) => nodeTest.beforeEach(() => fn());
export const afterEach = (fn) => nodeTest.afterEach(() => fn());

function thrownMatches(error, expected) {
  if (expected === undefined) return true;
  const message = error instanceof Error ? error.message : String(error);
  if (typeof expected === 'string') return message.includes(expected);
  if (expected instanceof RegExp) return expected.test(message);
  if (typeof expected === 'function') return error instanceof expected;
  if (expected instanceof Error) return message === expected.message;
  return false;
}

function matchers(actual, label, negated) {
  const check = (pass, what) => {
    if (pass === negated) {
      const prefix = label ? `${label}: ` : '';
      throw new assert.AssertionError({ message: `${prefix}expected ${show(actual)} ${negated ? 'not ' : ''}${what}`, actual, operator: what });
    }
  };
  const callThrows = () => {
    if (typeof actual !== 'function') throw new TypeError('expect(fn).toThrow() needs a function');
    try {
      actual();
    } catch (error) {
      return { threw: true, error };
    }
    return { threw: false };
  };
  const m = {
    toBe: (v) => check(Object.is(actual, v), `to be ${show(v)}`),
    toEqual: (v) => check(isDeepStrictEqual(actual, v), `to equal ${show(v)}`),
    toStrictEqual: (v) => check(isDeepStrictEqual(actual, v), `to strictly equal ${show(v)}`),
    toBeLessThan: (v) => check(actual < v, `to be less than ${show(v)}`),
    toBeLessThanOrEqual: (v) => check(actual <= v, `to be at most ${show(v)}`),
    toBeGreaterThan: (v) => check(actual > v, `to be greater than ${show(v)}`),
    toBeGreaterThanOrEqual: (v) => check(actual >= v, `to be at least ${show(v)}`),
    toBeCloseTo: (v, digits = 2) => check(Math.abs(actual - v) < 10 ** -digits / 2, `to be close to ${show(v)} (${digits} digits)`),
    toBeTruthy: () => check(Boolean(actual), 'to be truthy'),
    toBeFalsy: () => check(!actual, 'to be falsy'),
    toBeDefined: () => check(actual !== undefined, 'to be defined'),
    toBeUndefined: () => check(actual === undefined, 'to be undefined'),
    toBeNull: () => check(actual === null, 'to be null'),
    toBeNaN: () => check(Number.isNaN(actual), 'to be NaN'),
    toBeInstanceOf: (cls) => check(actual instanceof cls, `to be an instance of ${cls?.name}`),
    toHaveLength: (n) => check(actual?.length === n, `to have length ${n}`),
    toContain: (v) => check(typeof actual === 'string' ? actual.includes(v) : Array.from(actual).includes(v), `to contain ${show(v)}`),
    toMatch: (re) => check(typeof re === 'string' ? String(actual).includes(re) : re.test(String(actual)), `to match ${show(re)}`),
    toThrow: (expected) => {
      const r = callThrows();
      check(r.threw && thrownMatches(r.error, expected), `to throw ${expected === undefined ? '' : show(expected)} (got ${r.threw ? show(r.error?.message ?? r.error) : 'no error'})`);
    },
  };
  m.toThrowError = m.toThrow;
  return m;
}

export function expect(actual, label) {
  const m = matchers(actual, label, false);
  m.not = matchers(actual, label, true);
  m.rejects = new Proxy({}, {
    get: (_, key) => async (...args) => {
      let error;
      let threw = false;
      try {
        await actual;
      } catch (e) {
        threw = true;
        error = e;
      }
      if (!threw) throw new assert.AssertionError({ message: `${label ? `${label}: ` : ''}expected the promise to reject` });
      return matchers(error instanceof Error && key.startsWith('toThrow') ? () => { throw error; } : error, label, false)[key](...args);
    },
  });
  m.resolves = new Proxy({}, { get: (_, key) => async (...args) => matchers(await actual, label, false)[key](...args) });
  return m;
}
