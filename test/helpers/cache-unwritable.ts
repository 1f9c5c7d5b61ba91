// Run by 11.compression.test.ts with ENGRAM_CACHE_DIR somewhere no directory can be made
// (under /proc): the tokenizer must load without its cache, warning once.
import { CompressedTokenizer } from '../../src/index.js';

const first = CompressedTokenizer.deepseekV3();
const second = CompressedTokenizer.deepseekV3();
console.log(JSON.stringify({ compressed: first.compressedVocabSize, same: first.lookup.every((v, i) => v === second.lookup[i]) }));
