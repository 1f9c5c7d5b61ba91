import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const dir = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'fixtures');

export function fixture<T = any>(name: string): T {
  return JSON.parse(fs.readFileSync(path.join(dir, name), 'utf8')) as T;
}

/** Row ids of either output type as plain numbers (exact below 2^53). */
export function toNumbers(a: Int32Array | BigInt64Array): number[] {
  return Array.from(a as ArrayLike<number | bigint>, (v) => Number(v));
}
