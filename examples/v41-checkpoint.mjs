// DeepSeek-V4.1's Engram from a checkpoint, tables left in their files behind a cache of
// one-row pages, each batch's rows prefetched before the layers run.
//   node examples/v41-checkpoint.mjs [/models/DeepSeek-V4.1]
import os from 'node:os';
import path from 'node:path';
import { DeepseekV41EngramModel, writeSyntheticV41Checkpoint } from 'engram-kernels';

let dir = process.argv[2];
if (dir === undefined) {
  // No checkpoint given: write a small synthetic one in DeepSeek's layout.
  dir = path.join(os.tmpdir(), 'engram-example-v41');
  writeSyntheticV41Checkpoint(dir, { rowsScale: 1e-5, hiddenSize: 256 });
}
const model = DeepseekV41EngramModel.fromCheckpoint(dir, { table: { tier: 'file', cacheBytes: 64 * 2 ** 20, pageRows: 1 } });
const ids = model.hashMapping.tokenizer.encode('Only Alexander the Great could tame the horse Bucephalus.');
const [B, S] = [1, ids.length];
const { hiddenSize, hcMult } = model.config;
const streams = new Map([...model.layers.keys()].map((id) => [id, Float32Array.from({ length: B * S * hcMult * hiddenSize }, (_, i) => Math.cos(i))]));
const ticket = model.prefetch(ids, [B, S]); // the page copies start now
// ... the transformer blocks before the first Engram layer would run here ...
const { outputs } = model.forward(streams, ids, [B, S], { ticket }); // waits on its own pages only
for (const [id, layer] of model.layers) {
  const s = layer.pagerStats();
  console.log(`layer ${id}: output ${outputs.get(id).output.length} values; ${s.lookups} rows looked up, ${s.pageMisses} copied from the file`);
}
