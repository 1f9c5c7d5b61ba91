// The Engram layer written plainly in TypeScript: the baseline the native layer is
// measured against (with Float32Array storage), and, with Float64Array storage, the
// float64 recomputation the tests compare reduced-precision tables with.
export type FloatArrayCtor = Float32ArrayConstructor | Float64ArrayConstructor;

export interface BaselineLayer {
  hidden: number;
  hc: number;
  /** (maxNgramSize - 1) * nHeadPerNgram row ids per token */
  heads: number;
  /** table row width */
  cols: number;
  kernelSize: number;
  dilation: number;
  gateEps: number;
  convEps: number;
  /** [rows, cols] fp32 values, or bf16 bit patterns */
  table: Float32Array | Uint16Array;
  keyValueWeight: Float32Array; // [(hc + 1) * hidden, heads * cols]
  keyValueBias: Float32Array;
  norm1: Float32Array;
  norm2: Float32Array;
  convNorm: Float32Array;
  convWeight: Float32Array; // [hc * hidden, kernelSize]
}

export function baselineForward(
  Arr: FloatArrayCtor,
  L: BaselineLayer,
  hiddenStates: Float32Array,
  rowIds: Int32Array,
  batch: number,
  seqLen: number,
): { output: Float32Array | Float64Array; gates: Float32Array | Float64Array } {
  const { hidden, hc, heads, cols } = L;
  const features = heads * cols;
  const tokens = batch * seqLen;
  const bf16 = L.table instanceof Uint16Array;
  const word = new Uint32Array(1);
  const wordFloat = new Float32Array(word.buffer);

  // Gather.
  const e = new Arr(tokens * features);
  for (let m = 0; m < tokens; m++) {
    for (let h = 0; h < heads; h++) {
      const row = rowIds[m * heads + h];
      for (let c = 0; c < cols; c++) {
        let v: number;
        if (bf16) {
          word[0] = L.table[row * cols + c] << 16;
          v = wordFloat[0];
        } else {
          v = L.table[row * cols + c];
        }
        e[m * features + h * cols + c] = v;
      }
    }
  }
  // Projections: hc keys and the value.
  const width = (hc + 1) * hidden;
  const kv = new Arr(tokens * width);
  for (let m = 0; m < tokens; m++) {
    for (let n = 0; n < width; n++) {
      let s = L.keyValueBias[n];
      const w = n * features;
      for (let k = 0; k < features; k++) s += e[m * features + k] * L.keyValueWeight[w + k];
      kv[m * width + n] = s;
    }
  }
  // Gates and gated values.
  const gates = new Arr(tokens * hc);
  const value = new Arr(tokens * hc * hidden);
  const rmsInv = (a: ArrayLike<number>, off: number, eps: number) => {
    let s = 0;
    for (let j = 0; j < hidden; j++) s += a[off + j] * a[off + j];
    return 1 / Math.sqrt(s / hidden + eps);
  };
  for (let m = 0; m < tokens; m++) {
    for (let g = 0; g < hc; g++) {
      const kOff = m * width + g * hidden;
      const qOff = (m * hc + g) * hidden;
      const rk = rmsInv(kv, kOff, L.gateEps);
      const rq = rmsInv(hiddenStates, qOff, L.gateEps);
      let dot = 0;
      for (let j = 0; j < hidden; j++) {
        dot += kv[kOff + j] * rk * L.norm1[g * hidden + j] * (hiddenStates[qOff + j] * rq * L.norm2[g * hidden + j]);
      }
      let s = dot / Math.sqrt(hidden);
      s = Math.sign(s) * Math.sqrt(Math.max(Math.abs(s), 1e-6));
      const gate = 1 / (1 + Math.exp(-s));
      gates[m * hc + g] = gate;
      for (let j = 0; j < hidden; j++) value[(m * hc + g) * hidden + j] = gate * kv[m * width + hc * hidden + j];
    }
  }
  // ShortConv: per-branch RMSNorm, depthwise causal dilated conv, SiLU, residual.
  const normed = new Arr(tokens * hc * hidden);
  for (let r = 0; r < tokens * hc; r++) {
    const g = r % hc;
    const inv = rmsInv(value, r * hidden, L.convEps);
    for (let j = 0; j < hidden; j++) normed[r * hidden + j] = value[r * hidden + j] * inv * L.convNorm[g * hidden + j];
  }
  const output = new Arr(tokens * hc * hidden);
  const K = L.kernelSize;
  for (let b = 0; b < batch; b++) {
    for (let t = 0; t < seqLen; t++) {
      for (let g = 0; g < hc; g++) {
        for (let j = 0; j < hidden; j++) {
          const ch = g * hidden + j;
          let y = 0;
          for (let i = 0; i < K; i++) {
            const src = t - (K - 1 - i) * L.dilation;
            if (src >= 0) y += L.convWeight[ch * K + i] * normed[((b * seqLen + src) * hc + g) * hidden + j];
          }
          const at = ((b * seqLen + t) * hc + g) * hidden + j;
          output[at] = value[at] + y / (1 + Math.exp(-y));
        }
      }
    }
  }
  return { output, gates };
}
