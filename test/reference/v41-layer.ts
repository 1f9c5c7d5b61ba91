// DeepSeek-V4.1's Engram layer written plainly in TypeScript (Float32Array storage): the
// baseline bench:v41 measures the native layer against. Reads the fp8 codes directly.
const E4M3 = Float32Array.from({ length: 256 }, (_, c) => {
  const s = c & 0x80 ? -1 : 1;
  const e = (c >> 3) & 15;
  const m = c & 7;
  if (e === 15 && m === 7) return NaN;
  return s * (e === 0 ? m * 2 ** -9 : (1 + m / 8) * 2 ** (e - 7));
});
const UE8M0 = Float32Array.from({ length: 256 }, (_, c) => (c === 255 ? NaN : 2 ** (c - 127)));

export interface BaselineV41 {
  hidden: number;
  hc: number;
  cols: number;
  headDim: number;
  eps: number;
  embed: Uint8Array; // [rows, headDim] e4m3
  embedScale: Uint8Array; // [rows, headDim / 32]
  wkv: Uint8Array; // [(hc + 1) * hidden, cols * headDim] e4m3
  wkvScale: Uint8Array; // 32 x 32 blocks
  qWeight: Float32Array;
  kWeight: Float32Array;
}

export function baselineV41Forward(L: BaselineV41, streams: Float32Array, rowIds: Int32Array, tokens: number, mask?: Uint8Array): Float32Array {
  const { hidden: D, hc, cols, headDim } = L;
  const features = cols * headDim;
  const width = (hc + 1) * D;
  const blocksIn = Math.ceil(features / 32);
  const out = new Float32Array(tokens * hc * D);
  const rows = new Float32Array(features);
  const kv = new Float32Array(width);
  for (let m = 0; m < tokens; m++) {
    for (let c = 0; c < cols; c++) {
      const r = rowIds[m * cols + c];
      for (let j = 0; j < headDim; j++) rows[c * headDim + j] = E4M3[L.embed[r * headDim + j]] * UE8M0[L.embedScale[r * (headDim / 32) + (j >> 5)]];
    }
    for (let o = 0; o < width; o++) {
      let s = 0;
      for (let i = 0; i < features; i++) s += E4M3[L.wkv[o * features + i]] * UE8M0[L.wkvScale[(o >> 5) * blocksIn + (i >> 5)]] * rows[i];
      kv[o] = s;
    }
    for (let g = 0; g < hc; g++) {
      const h = streams.subarray((m * hc + g) * D, (m * hc + g + 1) * D);
      let kk = 0;
      let hh = 0;
      let dot = 0;
      for (let j = 0; j < D; j++) {
        const key = kv[g * D + j];
        kk += key * key;
        hh += h[j] * h[j];
        dot += h[j] * L.qWeight[g * D + j] * L.kWeight[g * D + j] * key;
      }
      let gate = 0;
      if (!mask || mask[m]) {
        const s = (dot / Math.sqrt(hh / D + L.eps) / Math.sqrt(kk / D + L.eps)) / Math.sqrt(D);
        gate = 1 / (1 + Math.exp(-Math.sign(s) * Math.sqrt(Math.max(Math.abs(s), 1e-6))));
      }
      for (let j = 0; j < D; j++) out[(m * hc + g) * D + j] = h[j] + gate * kv[hc * D + j];
    }
  }
  return out;
}
