// A small, slow, obviously-correct BigInt transcription of the reference's hashing
// (numpy int64 semantics), used to check the native kernels on random configs.

const MOD64 = 1n << 64n;

function toInt64(x: bigint): bigint {
  const u = ((x % MOD64) + MOD64) % MOD64;
  return u >= 1n << 63n ? u - MOD64 : u;
}

/** Python/numpy `%` for a positive divisor. */
function pyMod(x: bigint, p: bigint): bigint {
  return ((x % p) + p) % p;
}

export interface ReferenceLayer {
  multipliers: bigint[];
  primes: number[][];
  offsets?: number[];
}

/**
 * Row ids [B, T, layers, cols] with DEAD positions (mask 0) and per-sequence history
 * (-1 = DEAD/none); no mask and no history is the paper demo's hash.
 */
export function referenceHash(
  compressed: number[],
  batch: number,
  seqLen: number,
  maxNgram: number,
  layers: ReferenceLayer[],
  padId: number,
  mask?: ArrayLike<number>,
  history?: ArrayLike<number>,
): bigint[] {
  const keep = maxNgram - 1;
  const out: bigint[] = [];
  for (let b = 0; b < batch; b++) {
    // The sequence as the look-back sees it: history, then this chunk, DEAD as -1.
    const ext: number[] = [];
    for (let i = 0; i < keep; i++) ext.push(history ? history[b * keep + i] : -1);
    for (let t = 0; t < seqLen; t++) ext.push(mask && !mask[b * seqLen + t] ? -1 : compressed[b * seqLen + t]);
    for (let t = 0; t < seqLen; t++) {
      const tokens: bigint[] = [];
      let dead = false;
      for (let k = 0; k < maxNgram; k++) {
        const j = keep + t - k;
        if (j < 0 || ext[j] < 0) dead = true;
        tokens.push(BigInt(dead ? padId : ext[j]));
      }
      for (const layer of layers) {
        let col = 0;
        for (let n = 2; n <= maxNgram; n++) {
          let mix = 0n;
          for (let k = 0; k < n; k++) mix = toInt64(mix ^ toInt64(tokens[k] * layer.multipliers[k]));
          for (const p of layer.primes[n - 2]) {
            out.push(pyMod(mix, BigInt(p)) + BigInt(layer.offsets ? layer.offsets[col] : 0));
            col++;
          }
        }
      }
    }
  }
  return out;
}
