import path from 'node:path';
import { DeepseekV41EngramModel } from '../src/index.js';
import { native } from '../src/native.js';
import { median, timeRuns } from '../src/throughput.js';
import { brownTokens } from './corpus.js';
const model = DeepseekV41EngramModel.fromCheckpoint(path.join('.cache', 'bench-v41-0.005'), { device: 'cpu' });
const layer = model.layers.get(1)!;
const cols = layer.cols, headDim = layer.config.headDim;
const N = 4096;
const ids = brownTokens(model.hashMapping.tokenizer, N);
const rows = model.hashMapping.hashRows(ids, [1, N], { layers: [1], output: 'int32' }).rowIds as Int32Array;
let rs = 1;
const rnd = () => Int32Array.from({ length: N * cols }, () => { rs = (Math.imul(rs, 1103515245) + 12345) >>> 0; return Math.floor((rs / 4294967296) * layer.table.rows); });
const out = new Float32Array(N * cols * headDim);
const targs = layer.table.nativeArgs();
for (const [name, idsOf] of [['brown', () => rows], ['random', rnd]] as const) {
  const t1 = timeRuns(() => native().readRows({ ...targs, rowIds: idsOf() as Int32Array, threads: 0 }), 7);
  const t3 = timeRuns(() => native().readRows({ ...targs, rowIds: idsOf() as Int32Array, threads: 0, withScales: true }), 7);
  console.log(name, 'readRows+scales GB/s (264B)', (N * cols * 264 / t3.medianSeconds / 1e9).toFixed(2));
  const t2 = timeRuns(() => native().gatherRows({ ...targs, rowIds: idsOf() as Int32Array, tokens: N, heads: cols, out, threads: 0 }), 7);
  const bytes = N * cols * headDim;
  console.log(name, 'readRows GB/s', (bytes / t1.medianSeconds / 1e9).toFixed(2), 'gather GB/s (264B rows)', (N * cols * 264 / t2.medianSeconds / 1e9).toFixed(2), 'gather ms', (t2.medianSeconds * 1e3).toFixed(2));
}
void median;
