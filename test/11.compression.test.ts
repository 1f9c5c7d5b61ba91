import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { describe, expect, it } from 'vitest';

import { CompressedTokenizer, compressionKey } from '../src/index.js';
import { fixture } from './helpers/fixtures.js';

/** Runs `f` with ENGRAM_CACHE_DIR set to a fresh directory, restored and removed after. */
function withCacheDir(f: (dir: string) => void): void {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'engram-cache-'));
  const saved = process.env.ENGRAM_CACHE_DIR;
  process.env.ENGRAM_CACHE_DIR = dir;
  try {
    f(dir);
  } finally {
    if (saved === undefined) delete process.env.ENGRAM_CACHE_DIR;
    else process.env.ENGRAM_CACHE_DIR = saved;
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

describe('compression key', () => {
  it('normalises like the reference', () => {
    expect(compressionKey(' Hello', 'ĠHello')).toBe('hello');
    expect(compressionKey('Café', 'x')).toBe('cafe');
    expect(compressionKey('ﬁ', 'x')).toBe('fi'); // NFKC
    expect(compressionKey(' \n\t ', 'x')).toBe(' '); // a run of whitespace is one space, kept
    expect(compressionKey('\u3000', 'x')).toBe('\u3000'.normalize('NFKC')); // NFKC makes it a space
    expect(compressionKey('ΟΣ', 'x')).toBe('οσ'); // per-character lowercase: no final sigma
  });

  it('keeps a leading BOM (not JS white space trimming)', () => {
    expect(compressionKey('\uFEFFabc', 'x')).toBe('\uFEFFabc');
  });

  it('keys partial UTF-8 by the raw token string', () => {
    expect(compressionKey('\uFFFD', '·')).toBe('·');
  });
});

describe('CompressedTokenizer.deepseekV3()', () => {
  const expected = fixture<{ lookup: number[]; compressed_vocab_size: number; lookup_sha256_int32le: string; tokenizer_vocab_size: number }>(
    'compression-deepseek-v3.json',
  );

  it('equals the reference lookup exactly', () => {
    const tok = CompressedTokenizer.deepseekV3();
    expect(tok.vocabSize).toBe(expected.tokenizer_vocab_size);
    expect(tok.compressedVocabSize).toBe(expected.compressed_vocab_size);
    let mismatches = 0;
    for (let i = 0; i < tok.vocabSize; i++) if (tok.lookup[i] !== expected.lookup[i]) mismatches++;
    expect(mismatches).toBe(0);
    const sha = createHash('sha256').update(new Uint8Array(tok.lookup.buffer, tok.lookup.byteOffset, tok.lookup.byteLength)).digest('hex');
    expect(sha).toBe(expected.lookup_sha256_int32le);
  });

  it('builds the same lookup without the cache as with it', () => {
    const uncached = CompressedTokenizer.deepseekV3({ cache: false });
    const cached = CompressedTokenizer.deepseekV3();
    expect(Array.from(uncached.lookup)).toEqual(Array.from(cached.lookup));
  });

  it('compresses ids and encodes text', () => {
    const tok = CompressedTokenizer.deepseekV3();
    expect(Array.from(tok.compress([0, 1, 2]))).toEqual(expected.lookup.slice(0, 3));
    const ids = tok.encode('Only Alexander the Great');
    expect(ids.length).toBeGreaterThan(2);
    expect(ids.map((i) => tok.decode(i)).join('')).toBe('Only Alexander the Great');
  });

  it('a cache file with a valid header but other ids (zeroed) fails its checksum and is rebuilt', () => {
    withCacheDir((dir) => {
      const first = CompressedTokenizer.deepseekV3();
      const [file] = fs.readdirSync(dir);
      const bytes = fs.readFileSync(path.join(dir, file));
      bytes.fill(0, 44); // the header and its checksum kept, every compressed id 0
      fs.writeFileSync(path.join(dir, file), bytes);
      const second = CompressedTokenizer.deepseekV3();
      expect(second.compressedVocabSize).toBe(98_627);
      expect(Array.from(second.lookup)).toEqual(Array.from(first.lookup));
      expect(fs.readFileSync(path.join(dir, file)).equals(bytes)).toBe(false); // rewritten
    });
  });

  it('a cache directory that cannot be made (under /proc, where Node\'s recursive mkdir spins forever) means no cache and one warning, not a hang', () => {
    const script = path.join(__dirname, 'helpers', 'cache-unwritable.ts');
    const run = spawnSync(process.execPath, ['--import', 'tsx', script], {
      encoding: 'utf8',
      timeout: 120_000,
      env: { ...process.env, ENGRAM_CACHE_DIR: '/proc/engram-kernels-test/cache' },
    });
    expect(run.signal, run.stderr).toBeNull();
    expect(run.status, run.stderr).toBe(0);
    expect(JSON.parse(run.stdout.trim().split('\n').at(-1)!)).toEqual({ compressed: 98_627, same: true });
    expect(run.stderr.match(/EngramCacheWarning/g)?.length).toBe(1);
    expect(run.stderr).toMatch(/cannot write '\/proc\/engram-kernels-test\/cache\/compressed-[0-9a-f]+\.bin'/);
  });

  it('a FIFO where the cache file should be is skipped (never opened) and replaced', () => {
    withCacheDir((dir) => {
      const first = CompressedTokenizer.deepseekV3();
      const [file] = fs.readdirSync(dir);
      fs.rmSync(path.join(dir, file));
      expect(spawnSync('mkfifo', [path.join(dir, file)]).status).toBe(0);
      const second = CompressedTokenizer.deepseekV3();
      expect(Array.from(second.lookup)).toEqual(Array.from(first.lookup));
      expect(fs.statSync(path.join(dir, file)).isFile()).toBe(true); // rewritten as a file
    });
  });

  it('ignores a corrupt cache file', () => {
    withCacheDir((dir) => {
      const first = CompressedTokenizer.deepseekV3();
      const files = fs.readdirSync(dir);
      expect(files.length).toBe(1);
      fs.writeFileSync(path.join(dir, files[0]), 'garbage');
      const second = CompressedTokenizer.deepseekV3();
      expect(Array.from(second.lookup)).toEqual(Array.from(first.lookup));
    });
  });
});

describe('CompressedTokenizer bad input', () => {
  it('refuses a file that is not a tokenizer.json', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'engram-tok-'));
    const notJson = path.join(dir, 'a.json');
    fs.writeFileSync(notJson, 'not json at all');
    const noVocab = path.join(dir, 'b.json');
    fs.writeFileSync(noVocab, JSON.stringify({ model: { type: 'BPE' } }));
    expect(() => CompressedTokenizer.fromFile(notJson)).toThrow(/not a tokenizer\.json/);
    expect(() => CompressedTokenizer.fromFile(noVocab)).toThrow(TypeError);
    expect(() => CompressedTokenizer.fromFile(path.join(dir, 'missing.json'))).toThrow(/cannot be read/);
    expect(() => CompressedTokenizer.fromFile('' as string)).toThrow(TypeError);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('refuses out-of-range ids in compress', () => {
    const tok = CompressedTokenizer.fromLookup([0, 1, 0, 2]);
    expect(tok.compressedVocabSize).toBe(3);
    expect(() => tok.compress([4])).toThrow(/ids\[0\] = 4/);
    expect(() => tok.compress([-1])).toThrow(RangeError);
    expect(() => tok.compress([1.5])).toThrow(TypeError);
  });

  it('refuses a lookup that is not dense', () => {
    expect(() => CompressedTokenizer.fromLookup([0, 2, 0])).toThrow(/dense/);
    expect(() => CompressedTokenizer.fromLookup([])).toThrow(TypeError);
  });
});
