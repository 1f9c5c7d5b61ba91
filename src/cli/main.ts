#!/usr/bin/env node
// `engram`: demo, hash, devices, spec, v41, store, plan.
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';

import { CompressedTokenizer } from '../hashing/compressed-tokenizer.js';
import { buildInfo, devices } from '../core/devices.js';
import { DEEPSEEK_V41_NGRAM_HASH_CONFIG } from '../hashing/ngram-hash-config.js';
import { NgramHashMapping } from '../hashing/ngram-hash-mapping.js';
import { inspectV41, synthV41 } from './v41.js';
import { PLAN_FLAGS, PLAN_USAGE, planCommand } from './plan.js';
import { storePush, storeStrip } from './store.js';
import { Engram } from '../layers/paper/layer.js';
import { hashThroughput, machineFacts, progress, timeRuns } from '../core/throughput.js';
import { packageRoot } from '../native/index.js';

/** This package's version, for bug reports. */
function packageVersion(): string {
  return (JSON.parse(fs.readFileSync(path.join(packageRoot, 'package.json'), 'utf8')) as { version: string }).version;
}

const DEFAULT_SENTENCE = 'Only Alexander the Great could tame the horse Bucephalus.';

const USAGE = `usage:
  engram demo ["<sentence>"]            the hashing of one sentence, then this machine's throughput
  engram hash "<text>" [--v41] [--json]   token, compressed id and head ids of every n-gram
  engram devices                        CUDA devices visible to this process
  engram spec [--v41] [--lookup]        the hash specification as JSON
  engram v41 inspect <dir> [--json] [--verify]
                                        a DeepSeek-V4.1 checkpoint's Engram geometry, tensors, checks
                                        (--verify: read every table row for NaN codes, with progress)
  engram v41 synth <dir> [--rows-scale f] [--hidden n] [--sparse] [--mp n] [--tokenizer file]
                                        write a synthetic checkpoint in V4.1's layout
                                        (--sparse: tables as holes; --rows-scale 1 --sparse
                                        gives the released 2 x 98 GB geometry on little disk;
                                        --mp n: DeepSeek's model{rank}-mp{n} files, tables split by rows, the last rank padded)
  engram store push <checkpoint-dir|layer.safetensors> --url redis://host:port [--user u] [--password p]
                   [--tls] [--ca file] [--page-rows n] [--buckets n] [--page-keys 1|2] [--repair] [--json]
                                        upload every Engram table's pages to a Redis Cluster (the
                                        remote tier); resumes an interrupted push, verifies at the end
                                        (the password may come from ENGRAM_REDIS_PASSWORD instead;
                                        --repair: read every stored page whole, re-send corrupt ones;
                                        --buckets: hash-tag groups of the keys, default 128;
                                        --page-keys: how keys are spelled, default 2, the short
                                        form; 1: the first releases', for stores read by them)
  engram store strip <checkpoint-dir|layer.safetensors> <out> [--json]
                                        copy a checkpoint without its Engram tables' bytes (left
                                        as holes; headers unchanged) for hosts that read the
                                        tables from the remote tier; refused by every other tier
${PLAN_USAGE}

options:
  --v41        DeepSeek-V4.1's geometry (max n-gram 4, layers 1 and 14) with the V3 tokenizer
  --tokenizer  path of a Hugging Face tokenizer.json (default: DeepSeek-V3's)
  --json       machine-readable output`;

function shown(text: string): string {
  return JSON.stringify(text).slice(1, -1).replace(/ /g, '·');
}

function pad(s: string | number, width: number, right = false): string {
  const str = String(s);
  const len = [...str].length;
  if (len >= width) return str;
  return right ? ' '.repeat(width - len) + str : str + ' '.repeat(width - len);
}

function loadMapping(values: { v41?: boolean; tokenizer?: string }): NgramHashMapping {
  const tokenizer = values.tokenizer ? CompressedTokenizer.fromFile(values.tokenizer) : CompressedTokenizer.deepseekV3();
  // V4.1's preset pins 99,092 compressed ids (its own tokenizer); with another tokenizer the
  // geometry is shown without that pin.
  const config = values.v41
    ? { ...DEEPSEEK_V41_NGRAM_HASH_CONFIG, compressedVocabSize: values.tokenizer ? DEEPSEEK_V41_NGRAM_HASH_CONFIG.compressedVocabSize : undefined }
    : {};
  return new NgramHashMapping(config, tokenizer);
}

interface Explained {
  tokens: Array<{ t: number; id: number; text: string; compressedId: number }>;
  layers: Array<{ layerId: number; ngrams: Array<{ t: number; n: number; text: string; heads: number[] }> }>;
}

function explain(mapping: NgramHashMapping, text: string): Explained {
  const tok = mapping.tokenizer;
  const ids = tok.encode(text);
  const compressed = tok.compress(ids);
  const tokens = ids.map((id, t) => ({ t, id, text: tok.decode(id), compressedId: compressed[t] }));
  const { maxNgramSize, nHeadPerNgram } = mapping.config;
  const layers = mapping.config.layerIds.map((layerId) => {
    const hashes = mapping.hash(ids, [1, ids.length], layerId, { device: 'cpu' });
    const cols = mapping.rowsPerToken;
    const ngrams: Explained['layers'][number]['ngrams'] = [];
    for (let t = 0; t < ids.length; t++) {
      for (let n = 2; n <= maxNgramSize; n++) {
        const parts: string[] = [];
        for (let k = n - 1; k >= 0; k--) parts.push(t - k >= 0 ? tokens[t - k].text : '<pad>');
        const start = t * cols + (n - 2) * nHeadPerNgram;
        ngrams.push({ t, n, text: parts.join('|'), heads: Array.from(hashes.subarray(start, start + nHeadPerNgram)) });
      }
    }
    return { layerId, ngrams };
  });
  return { tokens, layers };
}

function printExplained(mapping: NgramHashMapping, e: Explained): void {
  console.log(`tokens (DeepSeek-V3 tokenizer, ${mapping.tokenizer.vocabSize} ids -> ${mapping.compressedVocabSize} compressed)`);
  console.log(`${pad('t', 3, true)}  ${pad('token', 16)} ${pad('id', 7, true)} ${pad('compressed', 10, true)}`);
  for (const t of e.tokens) console.log(`${pad(t.t, 3, true)}  ${pad(`"${shown(t.text)}"`, 16)} ${pad(t.id, 7, true)} ${pad(t.compressedId, 10, true)}`);
  for (const layer of e.layers) {
    console.log(`\nlayer ${layer.layerId}: head ids (${mapping.config.nHeadPerNgram} heads per n-gram; '<pad>' before the start)`);
    const width = Math.max(...layer.ngrams.map((g) => [...shown(g.text)].length)) + 2;
    const digits = Math.max(...layer.ngrams.flatMap((g) => g.heads.map((h) => String(h).length))) + 1;
    for (const g of layer.ngrams) {
      const heads = g.heads.map((h) => pad(h, digits, true)).join('');
      console.log(`${pad(g.t, 3, true)}  ${g.n}-gram ${pad(`"${shown(g.text)}"`, width)}${heads}`);
    }
  }
}

function demo(sentence: string): void {
  const mapping = loadMapping({});
  console.log(`Engram hashing, the reference's default configuration: layers [${mapping.config.layerIds}], ` +
    `n-grams 2..${mapping.config.maxNgramSize}, ${mapping.config.nHeadPerNgram} heads each\n`);
  console.log(`"${sentence}"\n`);
  printExplained(mapping, explain(mapping, sentence));

  const B = 8;
  const T = 4096;
  const ids = new Int32Array(B * T);
  let x = 12345;
  for (let i = 0; i < ids.length; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    ids[i] = x % mapping.tokenizer.vocabSize;
  }
  const facts = machineFacts();
  console.log(`\nthroughput, hashRows B x T = ${B} x ${T}, ${mapping.config.layerIds.length} layers x ${mapping.rowsPerToken} heads, int32 rows`);
  console.log(`machine: ${facts.cpu}, ${facts.cores} cores, Node ${facts.node}`);
  const threads = buildInfo().cpuThreads;
  for (const t of threads > 1 ? [1, threads] : [1]) {
    const show = progress(`  cpu, ${t} thread(s): run`);
    const r = hashThroughput(mapping, ids, [B, T], { threads: t, runs: 7, onRun: (i) => show(i, 7) });
    console.log(`  cpu, ${pad(t, 2, true)} thread(s): ${(r.tokensPerSecond / 1e6).toFixed(1)} M tokens/s (median of ${r.runs})`);
  }
  if (devices().length > 0) {
    const r = hashThroughput(mapping, ids, [B, T], { device: 'cuda', runs: 7 });
    console.log(`  cuda (${devices()[0].name}), with copies: ${(r.tokensPerSecond / 1e6).toFixed(1)} M tokens/s`);
  } else {
    console.log(`  cuda: not measured (${buildInfo().deviceUnavailableReason})`);
  }
  layerDemo(mapping.tokenizer, sentence);
}

/** The paper's layer on the sentence: what the memory contributed per token. */
function layerDemo(tokenizer: CompressedTokenizer, sentence: string): void {
  // The reference's dimensions with tables a tenth of the reference's rows (bf16), so
  // the demo builds its random layer in about a second.
  const engram = new Engram({ layerId: 1, engramVocabSize: 64_640 }, { tokenizer, tableDtype: 'bf16', seed: 1, device: 'cpu' });
  const g = engram.geometry;
  const ids = tokenizer.encode(sentence);
  let x = 7;
  const hidden = Float32Array.from({ length: ids.length * g.hc * g.hidden }, () => {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    return (x / 4294967296) * 2 - 1;
  });
  const { gates } = engram.forward(hidden, ids, [1, ids.length]);
  console.log(`
Engram layer 1 (hidden ${g.hidden}, ${g.hc} branches, ${g.rows.toLocaleString()} x ${g.cols} bf16 table, random weights, random hidden states):`);
  console.log('gate per token and branch (sigmoid of the key-query agreement; 0.5 = neutral)');
  ids.forEach((id, t) => {
    const row = Array.from(gates.subarray(t * g.hc, (t + 1) * g.hc), (v) => v.toFixed(3)).join(' ');
    console.log(`  ${pad(t, 3, true)}  ${pad(JSON.stringify(tokenizer.decode(id)), 16)} ${row}`);
  });
  const B = 4;
  const T = 256;
  const many = new Int32Array(B * T).map((_, i) => ids[i % ids.length]);
  const h = new Float32Array(B * T * g.hc * g.hidden).fill(0.5);
  const out = new Float32Array(h.length);
  const r = timeRuns(() => engram.forward(h, many, [B, T], { out }), 5, 1);
  console.log(`layer forward, B x T = ${B} x ${T}: ${((B * T) / r.medianSeconds / 1e3).toFixed(1)} k tokens/s on the CPU (npm run bench:forward for the full benchmark)`);
}

// What each command takes: its flags, how many positionals, and its usage lines.
interface CommandSpec {
  flags: readonly string[];
  positionals: { min: number; max: number };
  usage: string;
}
/** The usage lines of the commands starting with `prefix` (continuation lines included), and the options they take. */
function usageOf(prefix: string, flags: readonly string[] = []): string {
  const lines: string[] = [];
  let inside = false;
  for (const line of USAGE.split('\n')) {
    if (line.startsWith('  engram ')) inside = line.startsWith(`  engram ${prefix}`);
    else if (!line.startsWith('    ')) inside = false;
    if (inside) lines.push(line);
  }
  const options = USAGE.split('\n').filter((line) => flags.some((f) => line.startsWith(`  --${f} `)));
  return options.length > 0 ? `${lines.join('\n')}\n\noptions:\n${options.join('\n')}` : lines.join('\n');
}
const COMMANDS: Record<string, CommandSpec> = {
  demo: { flags: [], positionals: { min: 0, max: Infinity }, usage: usageOf('demo') },
  hash: { flags: ['v41', 'json', 'tokenizer'], positionals: { min: 1, max: Infinity }, usage: usageOf('hash', ['v41', 'json', 'tokenizer']) },
  devices: { flags: [], positionals: { min: 0, max: 0 }, usage: usageOf('devices') },
  spec: { flags: ['v41', 'lookup', 'tokenizer'], positionals: { min: 0, max: 0 }, usage: usageOf('spec', ['v41', 'tokenizer']) },
  'v41 inspect': { flags: ['json', 'verify'], positionals: { min: 1, max: 1 }, usage: usageOf('v41 inspect') },
  'v41 synth': { flags: ['rows-scale', 'hidden', 'sparse', 'mp', 'tokenizer'], positionals: { min: 1, max: 1 }, usage: usageOf('v41 synth', ['tokenizer']) },
  plan: { flags: [...Object.keys(PLAN_FLAGS), 'json'], positionals: { min: 0, max: 0 }, usage: PLAN_USAGE },
  'store push': { flags: ['url', 'user', 'password', 'tls', 'ca', 'page-rows', 'buckets', 'page-keys', 'repair', 'json'], positionals: { min: 1, max: 1 }, usage: usageOf('store push') },
  'store strip': { flags: ['json'], positionals: { min: 2, max: 2 }, usage: usageOf('store strip') },
};

/** A flag's number: finite, and an integer where asked, or a RangeError naming the flag. */
function numberFlag(name: string, text: string | undefined, integer: boolean): number | undefined {
  if (text === undefined) return undefined;
  const v = Number(text);
  if (text.trim() === '' || !Number.isFinite(v) || (integer && !Number.isInteger(v))) {
    throw new RangeError(`--${name} must be ${integer ? 'an integer' : 'a number'}, got ${JSON.stringify(text)}`);
  }
  return v;
}

/** --page-keys: 1 or 2, or a RangeError naming the flag. */
function pageKeysFlag(text: string | undefined): 1 | 2 | undefined {
  if (text === undefined) return undefined;
  if (text !== '1' && text !== '2') throw new RangeError(`--page-keys must be 1 or 2, got ${JSON.stringify(text)}`);
  return text === '1' ? 1 : 2;
}

function main(argv: string[]): number | Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      v41: { type: 'boolean' },
      json: { type: 'boolean' },
      lookup: { type: 'boolean' },
      tokenizer: { type: 'string' },
      'rows-scale': { type: 'string' },
      hidden: { type: 'string' },
      sparse: { type: 'boolean' },
      verify: { type: 'boolean' },
      mp: { type: 'string' },
      url: { type: 'string' },
      user: { type: 'string' },
      password: { type: 'string' },
      tls: { type: 'boolean' },
      ca: { type: 'string' },
      repair: { type: 'boolean' },
      buckets: { type: 'string' },
      'page-keys': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
      ...PLAN_FLAGS,
    },
  });
  const [command, ...rest] = positionals;
  if (command === undefined) {
    console.log(USAGE);
    return values.help ? 0 : 1;
  }
  let name = command;
  let args = rest;
  if (command === 'v41') {
    if (rest[0] !== 'inspect' && rest[0] !== 'synth') {
      console.error(`engram v41: expected 'inspect <dir>' or 'synth <dir>'\n\n${usageOf('v41')}`);
      return values.help ? 0 : 1;
    }
    name = `v41 ${rest[0]}`;
    args = rest.slice(1);
  }
  if (command === 'store') {
    if (rest[0] !== 'push' && rest[0] !== 'strip') {
      console.error(`engram store: expected 'push <checkpoint>' or 'strip <checkpoint> <out>'\n\n${usageOf('store')}`);
      return values.help ? 0 : 1;
    }
    name = `store ${rest[0]}`;
    args = rest.slice(1);
  }
  const spec = COMMANDS[name];
  if (spec === undefined) {
    console.error(`engram: unknown command ${JSON.stringify(command)}\n\n${USAGE}`);
    return 1;
  }
  if (values.help) {
    console.log(`usage:\n${spec.usage}`);
    return 0;
  }
  // Every flag given must be one this command reads, and the positionals must fit: a
  // flag or argument that would be silently ignored is an error instead.
  const stray = Object.keys(values).filter((flag) => values[flag as keyof typeof values] !== undefined && !spec.flags.includes(flag));
  if (stray.length > 0) {
    console.error(`engram ${name}: does not take ${stray.map((f) => `--${f}`).join(', ')}\n\nusage:\n${spec.usage}`);
    return 1;
  }
  if (args.length < spec.positionals.min || args.length > spec.positionals.max) {
    const extra = args.length > spec.positionals.max ? `unexpected argument${args.length - spec.positionals.max > 1 ? 's' : ''} ${args.slice(spec.positionals.max).map((a) => JSON.stringify(a)).join(' ')}` : 'missing argument';
    console.error(`engram ${name}: ${extra}\n\nusage:\n${spec.usage}`);
    return 1;
  }
  switch (name) {
    case 'demo':
      demo(args.join(' ') || DEFAULT_SENTENCE);
      return 0;
    case 'hash': {
      const mapping = loadMapping(values);
      const e = explain(mapping, args.join(' '));
      if (values.json) console.log(JSON.stringify(e, null, 1));
      else printExplained(mapping, e);
      return 0;
    }
    case 'devices': {
      const info = buildInfo();
      const found = devices();
      console.log(
        JSON.stringify(
          {
            package: packageVersion(),
            node: process.versions.node,
            platform: `${process.platform}-${process.arch}`,
            cudaBackend: info.cuda,
            cpuThreads: info.cpuThreads,
            cpuKernel: info.cpuKernel,
            cpuFeatures: info.cpuFeatures,
            devices: found,
            reason: found.length ? undefined : info.deviceUnavailableReason,
          },
          null,
          1,
        ),
      );
      return 0;
    }
    case 'spec':
      console.log(JSON.stringify(loadMapping(values).toSpec({ includeLookup: values.lookup }), null, 1));
      return 0;
    case 'v41 inspect':
      return inspectV41(args[0], values.json === true, values.verify === true);
    case 'v41 synth':
      return synthV41(args[0], {
        rowsScale: numberFlag('rows-scale', values['rows-scale'], false) ?? 1e-4,
        hiddenSize: numberFlag('hidden', values.hidden, true),
        sparseTables: values.sparse === true,
        mp: numberFlag('mp', values.mp, true),
        tokenizer: values.tokenizer,
      });
    case 'store push':
      return storePush(args[0], {
        url: values.url,
        user: values.user,
        password: values.password,
        tls: values.tls,
        ca: values.ca,
        pageRows: numberFlag('page-rows', values['page-rows'], true),
        repair: values.repair === true,
        buckets: numberFlag('buckets', values.buckets, true),
        pageKeys: pageKeysFlag(values['page-keys']),
        json: values.json === true,
      });
    case 'store strip':
      return storeStrip(args[0], args[1], { json: values.json === true });
    default:
      return planCommand(values);
  }
}

try {
  process.exitCode = await main(process.argv.slice(2));
} catch (err) {
  console.error(`engram: ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = 1;
}
