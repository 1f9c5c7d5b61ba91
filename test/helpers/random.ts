// A seeded generator for property tests (mulberry32), so failures reproduce.
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function randInt(r: () => number, lo: number, hi: number): number {
  return lo + Math.floor(r() * (hi - lo + 1));
}

/** A dense random compression of `vocab` raw ids onto about `vocab * ratio` ids. */
export function randomLookup(r: () => number, vocab: number, ratio = 0.7): number[] {
  const distinct = Math.max(1, Math.floor(vocab * ratio));
  const raw = Array.from({ length: vocab }, (_, i) => (i < distinct ? i : randInt(r, 0, distinct - 1)));
  // Renumber by first appearance, as CompressedTokenizer does.
  const seen = new Map<number, number>();
  return raw.map((v) => {
    if (!seen.has(v)) seen.set(v, seen.size);
    return seen.get(v)!;
  });
}
