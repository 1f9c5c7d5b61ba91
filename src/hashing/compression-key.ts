// The reference's CompressedTokenizer key: which token texts count as the same word.

const WHITESPACE_RUN = /[ \t\r\n]+/g;
const MARKS = /\p{M}/gu;
// Unicode's White_Space, as the reference's Rust normalizer strips it. Not JS `trim()`,
// which also strips U+FEFF and would merge the three BOM-led tokens of DeepSeek-V3.
const EDGE_WHITESPACE = /^\p{White_Space}+|\p{White_Space}+$/gu;

/**
 * Key of one decoded token: NFKC, NFD, drop marks, lowercase per character, collapse
 * [ \t\r\n] runs to one space, keep a lone space, strip White_Space at both ends; an
 * empty result falls back to the text. A text with U+FFFD (a partial UTF-8 sequence)
 * keys by the raw vocabulary string instead, in the same key space.
 */
export function compressionKey(text: string, rawToken: string): string {
  if (text.includes('\uFFFD')) return rawToken;
  const decomposed = text.normalize('NFKC').normalize('NFD').replace(MARKS, '');
  let lowered = '';
  // Per character, as Rust's char::to_lowercase: no final-sigma context rule.
  for (const ch of decomposed) lowered += ch.toLowerCase();
  const spaced = lowered.replace(WHITESPACE_RUN, ' ');
  if (spaced === ' ') return spaced;
  const stripped = spaced.replace(EDGE_WHITESPACE, '');
  return stripped === '' ? text : stripped;
}
