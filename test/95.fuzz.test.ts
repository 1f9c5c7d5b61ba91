// Property-based fuzzing of every parser that reads outside input: the safetensors header,
// tokenizer.json, hash specs, config.json and the checkpoint index. Each target runs for
// FUZZ_SECONDS (10 s by default) from a fresh seed, printed on failure with the shrunk
// input; FUZZ_SEED=<seed> replays a run. Inputs that once failed stay in
// test/fixtures/fuzz-regressions.json and run every time. Longer runs: see docs/robustness.md.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';

import { CompressedTokenizer, DeepseekV41EngramModel, NgramHashMapping, parseSafetensors, parseV41Config, writeSyntheticV41Checkpoint } from '../src/index.js';
import { cleanOutcome, fuzzMilliseconds, fuzzParameters } from './fuzz/oracle.js';
import { fixture } from './helpers/fixtures.js';

interface Regressions {
  safetensors: string[]; // hex
  tokenizer: string[]; // JSON text
  spec: unknown[];
  config: unknown[];
  index: unknown[];
}
const regressions = fixture<Regressions>('fuzz-regressions.json');
const timeout = fuzzMilliseconds + 60_000;

// --- safetensors -------------------------------------------------------------------------
function safetensorsBytes(header: unknown, payload: Uint8Array, lengthOverride?: bigint): Uint8Array {
  let text = JSON.stringify(header);
  while ((8 + Buffer.byteLength(text)) % 8 !== 0) text += ' ';
  const head = Buffer.from(text);
  const out = new Uint8Array(8 + head.length + payload.length);
  new DataView(out.buffer).setBigUint64(0, lengthOverride ?? BigInt(head.length), true);
  out.set(head, 8);
  out.set(payload, 8 + head.length);
  return out;
}
const dtype = fc.constantFrom('F32', 'F16', 'BF16', 'F64', 'I64', 'I32', 'U8', 'I8', 'F8_E4M3', 'F8_E8M0', 'BOOL', 'F4', 'X', '');
const dim = fc.oneof(fc.integer({ min: 0, max: 8 }), fc.integer({ min: -3, max: 2 ** 40 }), fc.constant(2 ** 53), fc.double());
const tensorEntry = fc.record({ dtype, shape: fc.array(dim, { maxLength: 4 }), data_offsets: fc.array(fc.oneof(fc.integer({ min: 0, max: 128 }), fc.integer({ min: -5, max: 2 ** 40 })), { maxLength: 3 }) });
const structuredFile = fc
  .tuple(
    fc.dictionary(fc.oneof(fc.constantFrom('a', 'b', 'w.weight', '__metadata__'), fc.string({ maxLength: 6 })), fc.oneof(tensorEntry, fc.jsonValue({ maxDepth: 2 })), { maxKeys: 4 }),
    fc.uint8Array({ maxLength: 160 }),
    fc.option(fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), { freq: 6 }),
  )
  .map(([header, payload, length]) => safetensorsBytes(header, payload, length ?? undefined));
const validFile = safetensorsBytes({ a: { dtype: 'F32', shape: [2, 3], data_offsets: [0, 24] }, b: { dtype: 'BF16', shape: [4], data_offsets: [24, 32] } }, new Uint8Array(32).fill(7));
const flippedFile = fc.array(fc.tuple(fc.nat(validFile.length - 1), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 }).map((flips) => {
  const bytes = validFile.slice();
  for (const [at, value] of flips) bytes[at] = value;
  return bytes;
});
const truncatedFile = fc.nat(validFile.length).map((n) => validFile.slice(0, n));

function readBack(bytes: Uint8Array): void {
  const file = parseSafetensors(bytes.slice().buffer, 'fuzz');
  // What the parser accepted must be readable as described: every tensor within the payload.
  for (const t of Object.values(file.tensors)) {
    expect(t.data.byteOffset + t.data.byteLength).toBeLessThanOrEqual(bytes.length);
  }
}

describe('fuzz: safetensors header', () => {
  it('any bytes: a parse whose tensors lie inside the buffer, or a clear error', () => {
    expect(cleanOutcome(() => readBack(validFile))).toBe(true);
    for (const hex of regressions.safetensors) expect(cleanOutcome(() => readBack(Buffer.from(hex, 'hex')))).toBe(false);
    fc.assert(fc.property(fc.oneof(structuredFile, flippedFile, truncatedFile, fc.uint8Array({ maxLength: 64 })), (bytes) => void cleanOutcome(() => readBack(bytes))), fuzzParameters);
  }, timeout);
});

// --- tokenizer.json ----------------------------------------------------------------------
const tokenizerJson = (vocab: Record<string, number>, extra: Record<string, unknown> = {}) =>
  JSON.stringify({ version: '1.0', truncation: null, padding: null, added_tokens: [], normalizer: null, pre_tokenizer: null, post_processor: null, decoder: null, model: { type: 'WordLevel', vocab, unk_token: '[UNK]' }, ...extra });

describe('fuzz: tokenizer.json compression', () => {
  it('any vocabulary or structure: a lookup of the vocabulary\'s size into fewer ids, or a clear error', () => {
    const fromText = (text: string) => {
      const tok = CompressedTokenizer.fromBytes(Buffer.from(text), 'fuzz', { cache: false });
      expect(tok.lookup.length).toBe(tok.vocabSize);
      for (const v of tok.lookup) expect(v >= 0 && v < tok.compressedVocabSize).toBe(true);
    };
    expect(cleanOutcome(() => fromText(tokenizerJson({ a: 0, A: 1, '[UNK]': 2 })))).toBe(true);
    for (const text of regressions.tokenizer) expect(cleanOutcome(() => fromText(text))).toBe(false);
    const vocab = fc.uniqueArray(fc.string({ unit: fc.oneof(fc.constantFrom('a', 'A', ' ', 'Ġ', '▁', 'é', '\u0301', '\u200b', '\n'), fc.string({ unit: 'grapheme', maxLength: 1 })), maxLength: 4 }), { maxLength: 12 })
      .map((words) => Object.fromEntries(words.map((w, i) => [w, i])));
    const structure = fc.oneof(
      vocab.map((v) => tokenizerJson(v)),
      fc.tuple(vocab, fc.dictionary(fc.constantFrom('normalizer', 'pre_tokenizer', 'model', 'added_tokens', 'decoder'), fc.jsonValue({ maxDepth: 3 }), { maxKeys: 2 })).map(([v, extra]) => tokenizerJson(v, extra)),
      fc.jsonValue({ maxDepth: 3 }).map((j) => JSON.stringify(j)),
      fc.string({ maxLength: 40 }),
    );
    fc.assert(fc.property(structure, (text) => void cleanOutcome(() => fromText(text))), fuzzParameters);
  }, timeout);
});

// --- hash specs --------------------------------------------------------------------------
describe('fuzz: NgramHashMapping.fromSpec', () => {
  const tokenizer = CompressedTokenizer.fromLookup([0, 1, 2, 3, 4, 5, 6, 7]);
  const valid = new NgramHashMapping({ engramVocabSize: 1009, maxNgramSize: 3, nHeadPerNgram: 2, layerIds: [1, 2] }, tokenizer).toSpec({ includeLookup: true });
  const ids = Int32Array.of(1, 2, 3, 4, 5, 6);
  const use = (spec: unknown) => {
    const mapping = NgramHashMapping.fromSpec(spec as never, tokenizer);
    // A spec accepted must hash: row ids inside each layer's table.
    const rows = mapping.hashRows(ids, [2, 3], { output: 'int64', device: 'cpu' }).rowIds as BigInt64Array;
    for (const v of rows) expect(v >= 0n).toBe(true);
  };
  it('any edit of a valid spec: a mapping that hashes, or a clear error', () => {
    expect(cleanOutcome(() => use(valid))).toBe(true);
    for (const spec of regressions.spec) expect(cleanOutcome(() => use(spec))).toBe(false);
    const paths = (o: unknown, prefix: string[] = []): string[][] =>
      o !== null && typeof o === 'object' ? Object.entries(o).flatMap(([k, v]) => [[...prefix, k], ...paths(v, [...prefix, k])]) : [];
    const all = paths(valid);
    const edit = fc.tuple(fc.constantFrom(...all), fc.oneof(fc.jsonValue({ maxDepth: 2 }), fc.integer(), fc.constantFrom(0, -1, 1, 2 ** 31, 2 ** 53, 1.5, '7', null, [], [0])));
    const edited = fc.array(edit, { minLength: 1, maxLength: 3 }).map((edits) => {
      const spec = structuredClone(valid) as unknown as Record<string, unknown>;
      for (const [keys, value] of edits) {
        let node = spec as Record<string, unknown>;
        for (const k of keys.slice(0, -1)) {
          if (node[k] === null || typeof node[k] !== 'object') break;
          node = node[k] as Record<string, unknown>;
        }
        node[keys[keys.length - 1]] = structuredClone(value); // a later edit may walk into it: never into fast-check's own value
      }
      return spec;
    });
    // A clone: what the code under test does to its input must not reach fast-check's values.
    fc.assert(fc.property(fc.oneof(edited, fc.jsonValue({ maxDepth: 3 })), (spec) => void cleanOutcome(() => use(structuredClone(spec)))), fuzzParameters);
  }, timeout);
});

// --- config.json and the checkpoint index ------------------------------------------------
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'engram-fuzz-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('fuzz: checkpoint config.json and index', () => {
  const ckpt = path.join(dir, 'v41');
  writeSyntheticV41Checkpoint(ckpt, { rowsScale: 2e-5, hiddenSize: 32, hcMult: 2, seed: 4 });
  const config = JSON.parse(fs.readFileSync(path.join(ckpt, 'config.json'), 'utf8'));
  const indexFile = path.join(ckpt, 'model.safetensors.index.json');
  const index = JSON.parse(fs.readFileSync(indexFile, 'utf8'));
  const anyValue = fc.oneof(fc.jsonValue({ maxDepth: 2 }), fc.constantFrom(0, 1, -1, 2, 1e300, 0.5, '../x', '/etc/passwd', [], [1, 1], [0, 1e9], null));

  it('config.json: any field edited gives a config the layers can use, or a clear error', () => {
    const text = config.text_config as Record<string, unknown>;
    const use = (c: unknown) => {
      const parsed = parseV41Config(c, 'config.json');
      expect(parsed.maxNgramSize).toBeGreaterThanOrEqual(2);
      expect(parsed.engramVocabSize.length).toBe(parsed.maxNgramSize - 1);
    };
    expect(cleanOutcome(() => use(config))).toBe(true);
    for (const c of regressions.config) expect(cleanOutcome(() => use(c))).toBe(false);
    const edited = fc.array(fc.tuple(fc.constantFrom(...Object.keys(text)), anyValue), { minLength: 1, maxLength: 3 }).map((edits) => ({ ...config, text_config: { ...text, ...Object.fromEntries(edits) } }));
    fc.assert(fc.property(fc.oneof(edited, anyValue), (c) => void cleanOutcome(() => use(structuredClone(c)))), { ...fuzzParameters, interruptAfterTimeLimit: fuzzMilliseconds / 2 });
  }, timeout);

  it('the index: any weight_map gives a model or a clear error, never a read outside the directory', () => {
    const original = fs.readFileSync(indexFile, 'utf8');
    const open = (json: unknown) => {
      fs.writeFileSync(indexFile, JSON.stringify(json));
      DeepseekV41EngramModel.fromCheckpoint(ckpt);
    };
    try {
      expect(cleanOutcome(() => open(index))).toBe(true);
      for (const j of regressions.index) expect(cleanOutcome(() => open(j))).toBe(false);
      const names = Object.keys(index.weight_map as Record<string, string>);
      const edited = fc.array(fc.tuple(fc.constantFrom(...names), anyValue), { minLength: 1, maxLength: 2 }).map((edits) => ({ ...index, weight_map: { ...index.weight_map, ...Object.fromEntries(edits) } }));
      fc.assert(fc.property(fc.oneof(edited, anyValue, fc.record({ weight_map: anyValue })), (j) => void cleanOutcome(() => open(j))), { ...fuzzParameters, interruptAfterTimeLimit: fuzzMilliseconds / 2 });
    } finally {
      fs.writeFileSync(indexFile, original);
    }
  }, timeout);
});
