// The paper's Engram layer from safetensors (weights under the reference's state_dict
// names), run on a batch of hidden states.   node examples/paper-layer.mjs [layer.safetensors]
import os from 'node:os';
import path from 'node:path';
import { CompressedTokenizer, Engram } from 'engram-kernels';

let file = process.argv[2];
if (file === undefined) {
  // No checkpoint given: save a small seeded layer and load that (tables are memory-mapped).
  const config = { engramVocabSize: [20000, 20000], hiddenSize: 256, nEmbedPerNgram: 128 };
  file = path.join(os.tmpdir(), 'engram-example-layer.safetensors');
  new Engram(config, { seed: 1 }).saveSafetensors(file);
}
const engram = Engram.fromSafetensors(file);
const { hiddenSize, hcMult } = engram.config;
const ids = CompressedTokenizer.deepseekV3().encode('Engram gives a transformer an O(1) lookup.');
const [B, T] = [1, ids.length];
const hidden = Float32Array.from({ length: B * T * hcMult * hiddenSize }, (_, i) => Math.sin(i));
const { output, gates } = engram.forward(hidden, ids, [B, T]); // output [B, T, hc, hidden]
console.log(`layer ${engram.config.layerId}: output ${output.length} values, gates of token 0:`, Array.from(gates.subarray(0, hcMult), (g) => g.toFixed(4)));
