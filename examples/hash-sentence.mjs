// Hash a sentence as the paper's Engram does: compress the token ids, then find the table
// row of each 2-gram and 3-gram in every head.   node examples/hash-sentence.mjs "your text"
import { CompressedTokenizer, NgramHashMapping } from 'engram-kernels';

const text = process.argv[2] ?? 'Only Alexander the Great could tame the horse Bucephalus.';
const tokenizer = CompressedTokenizer.deepseekV3(); // 128,815 token ids -> 98,627
const mapping = new NgramHashMapping({}, tokenizer); // the reference's defaults
const ids = tokenizer.encode(text);
const heads = mapping.hash(ids, [1, ids.length], 1); // Int32Array [1, T, 16]: layer 1's heads
const compressed = tokenizer.compress(ids);
const perToken = heads.length / ids.length;
for (let t = 0; t < ids.length; t++) {
  const row = Array.from(heads.subarray(t * perToken, t * perToken + 4)).join(' ');
  console.log(`${JSON.stringify(tokenizer.decode(ids[t])).padEnd(14)} ${String(compressed[t]).padStart(6)}  2-gram heads 0-3: ${row}`);
}
