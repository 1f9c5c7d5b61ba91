// What an installed package must do, run where it is installed (copied into a consumer
// project by scripts/consumer-install-test.mjs; also run in the checkout, which resolves
// 'engram-kernels' to itself): load the binary, compress and hash bit-exactly against the
// reference's golden vectors, and run a small forward of both Engram layers and of the MoE
// block. Prints one JSON line: where the binary came from and a digest of every output, so
// that the runner can compare the installed package's bits with the checkout's.
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';

import {
  buildInfo, CompressedTokenizer, DeepseekV41EngramModel, Engram, MoE, NgramHashMapping, writeSyntheticV41Checkpoint,
} from 'engram-kernels';

// The golden vectors: test/fixtures/hash-default.json, passed as the first argument.
if (process.argv[2] === undefined) throw new Error('usage: node smoke.mjs <hash-default.json>');
const fixture = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const digest = (a) => crypto.createHash('sha256').update(Buffer.from(a.buffer, a.byteOffset, a.byteLength)).digest('hex').slice(0, 16);
const fail = (what) => {
  console.error(`smoke: ${what}`);
  process.exit(1);
};

// Which binary node-gyp-build picked, seen from the package's own folder.
const require = createRequire(import.meta.url);
const pkgDir = path.dirname(require.resolve('engram-kernels/package.json'));
const gypBuild = createRequire(path.join(pkgDir, 'package.json'))('node-gyp-build');
const binary = path.relative(pkgDir, gypBuild.resolve(pkgDir));
const info = buildInfo();

// Compression and hashing against the golden vectors (numpy int64 reference).
const tokenizer = CompressedTokenizer.deepseekV3();
if (tokenizer.compressedVocabSize !== fixture.compressed_vocab_size) fail(`compressed vocabulary ${tokenizer.compressedVocabSize}, expected ${fixture.compressed_vocab_size}`);
const c = fixture.config;
const mapping = new NgramHashMapping(
  { engramVocabSize: c.engram_vocab_size, maxNgramSize: c.max_ngram_size, nHeadPerNgram: c.n_head_per_ngram, layerIds: c.layer_ids, padId: c.pad_id, seed: c.seed },
  tokenizer,
);
const B = fixture.input_ids.length;
const T = fixture.input_ids[0].length;
const ids = Int32Array.from(fixture.input_ids.flat());
if (Array.from(tokenizer.compress(ids)).join() !== fixture.compressed_ids.flat().join()) fail('compressed ids differ from the reference');
const hashes = {};
for (const layer of fixture.layers) {
  const got = mapping.hash(ids, [B, T], layer.layer_id);
  if (Array.from(got).join() !== layer.hashes.flat(2).join()) fail(`layer ${layer.layer_id} hashes differ from the reference`);
  hashes[layer.layer_id] = digest(got);
}

// The paper's layer: small, seeded, through safetensors.
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'engram-smoke-'));
try {
  const layerFile = path.join(scratch, 'layer.safetensors');
  new Engram({ engramVocabSize: [5000, 5000], hiddenSize: 64, nEmbedPerNgram: 64 }, { seed: 3 }).saveSafetensors(layerFile);
  const engram = Engram.fromSafetensors(layerFile);
  const hidden = Float32Array.from({ length: B * T * 4 * 64 }, (_, i) => Math.sin(i * 0.37));
  const paper = engram.forward(hidden, ids, [B, T], { device: 'cpu' });

  // DeepSeek-V4.1's layers from a synthetic checkpoint, tables read through the file tier.
  const dir = path.join(scratch, 'v41');
  writeSyntheticV41Checkpoint(dir, { rowsScale: 2e-6, hiddenSize: 64, seed: 4 });
  const model = DeepseekV41EngramModel.fromCheckpoint(dir, { table: { tier: 'file', cacheBytes: 2 ** 22, pageRows: 1 } });
  const streams = new Map([...model.layers.keys()].map((id) => [id, Float32Array.from({ length: B * T * 4 * 64 }, (_, i) => Math.cos(i * 0.11 + id))]));
  const ticket = model.prefetch(ids, [B, T]);
  const v41 = model.forward(streams, ids, [B, T], { ticket });

  // MoE: DeepSeek-V3's grouped sigmoid gate over 16 experts, two shared.
  const dim = 32;
  let seed = 7;
  const rand = (n) => Float32Array.from({ length: n }, () => ((seed = (seed * 48271) % 2147483647) / 2147483647 - 0.5) * 0.3);
  const moe = new MoE({ dim, numExperts: 16, ffnDim: 16, topk: 4, nGroups: 4, topkGroups: 2, scoreFunc: 'sigmoid', routeScale: 2.5, nSharedExperts: 1, sharedFfnDim: 16 }, { device: 'cpu' });
  const weights = { 'gate.weight': { dtype: 'F32', shape: [16, dim], data: rand(16 * dim) }, 'gate.bias': { dtype: 'F32', shape: [16], data: rand(16) } };
  for (const [prefix, ffn] of [...Array.from({ length: 16 }, (_, e) => [`experts.${e}`, 16]), ['shared_experts', 16]]) {
    weights[`${prefix}.w1.weight`] = { dtype: 'F32', shape: [ffn, dim], data: rand(ffn * dim) };
    weights[`${prefix}.w3.weight`] = { dtype: 'F32', shape: [ffn, dim], data: rand(ffn * dim) };
    weights[`${prefix}.w2.weight`] = { dtype: 'F32', shape: [dim, ffn], data: rand(dim * ffn) };
  }
  moe.loadStateDict(weights);
  const moeOut = moe.forward(rand(24 * dim), [24, dim]);

  for (const [name, a] of [['paper', paper.output], ['v41.1', v41.outputs.get(1).output], ['v41.14', v41.outputs.get(14).output], ['moe', moeOut.output]]) {
    if (!a.every(Number.isFinite)) fail(`${name} output has non-finite values`);
  }
  console.log(JSON.stringify({
    binary,
    cuda: info.cuda,
    cpuKernel: info.cpuKernel,
    digests: {
      hashes,
      paper: digest(paper.output),
      paperGates: digest(paper.gates),
      v41Layer1: digest(v41.outputs.get(1).output),
      v41Layer14: digest(v41.outputs.get(14).output),
      v41History: digest(v41.history),
      moe: digest(moeOut.output),
      moeRoute: digest(moeOut.route.indices),
    },
  }));
} finally {
  fs.rmSync(scratch, { recursive: true, force: true });
}
