import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { describe, expect, it } from 'vitest';

import { baselineForward } from './reference/paper-layer.js';
import { CompressedTokenizer, Engram, EngramTable } from '../src/index.js';
import { baselineLayerOf, maxRelError, small, smallConfig, smallEngram, smallInputs } from './helpers/forward-small.js';
import { rng } from './helpers/random.js';

const f32 = (x: number) => Math.fround(x);

describe('table formats decode exactly', () => {
  it('every fp8 e4m3 code with every scale decodes to (-1)^s 2^(e-7) (1 + m/8) * 2^(k-127)', () => {
    const codes = Uint8Array.from({ length: 256 * 32 }, (_, i) => i % 256);
    for (const scale of [1, 100, 127, 130, 254]) {
      const scales = new Uint8Array(256).fill(scale);
      const t = EngramTable.fromBytes(codes, 256, 32, 'f8e4m3', scales);
      const got = t.toFloat32();
      for (let i = 0; i < codes.length; i++) {
        const c = codes[i];
        const s = c & 0x80 ? -1 : 1;
        const e = (c >> 3) & 15;
        const m = c & 7;
        const v = e === 15 && m === 7 ? NaN : s * (e === 0 ? m * 2 ** -9 : (1 + m / 8) * 2 ** (e - 7)) * 2 ** (scale - 127);
        if (Number.isNaN(v)) expect(got[i]).toBeNaN();
        else expect(got[i]).toBe(f32(v));
      }
    }
  });

  it('bf16 and f16 round to nearest even and decode back exactly', () => {
    const values = Float32Array.from([1, -2.5, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 65504, 70000, 2 ** -24, 2 ** -25 * 3, 1e-8, -0, 0.1]);
    const n = values.length;
    const bf = EngramTable.fromFloat32(values, n, 1, 'bf16').toFloat32();
    const hf = EngramTable.fromFloat32(values, n, 1, 'f16').toFloat32();
    expect(Array.from(bf.slice(0, 4))).toEqual([1, -2.5, 1, 1 + 2 ** -6]); // ties to even
    expect(Array.from(hf.slice(0, 6))).toEqual([1, -2.5, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 65504, Infinity]);
    expect(hf[6]).toBe(2 ** -24); // smallest subnormal
    expect(hf[7]).toBe(2 ** -23); // 1.5 ulp ties to even
    expect(hf[8]).toBe(0);
    expect(hf[10]).toBe(f32(0.0999755859375));
  });

  it('quantising to fp8 picks the smallest power-of-two scale and rounds within half a step', () => {
    const r = rng(11);
    const rows = 64;
    const cols = 64;
    const values = Float32Array.from({ length: rows * cols }, () => (r() - 0.5) * 10 ** (r() * 6 - 3));
    const t = EngramTable.fromFloat32(values, rows, cols, 'f8e4m3');
    const back = t.toFloat32();
    for (let row = 0; row < rows; row++) {
      for (let blk = 0; blk < cols / 32; blk++) {
        let amax = 0;
        for (let c = 0; c < 32; c++) amax = Math.max(amax, Math.abs(values[row * cols + blk * 32 + c]));
        const scale = 2 ** (t.scales![row * (cols / 32) + blk] - 127);
        expect(amax / scale).toBeLessThanOrEqual(448);
        expect(amax / (scale / 2)).toBeGreaterThan(448);
        for (let c = 0; c < 32; c++) {
          const i = row * cols + blk * 32 + c;
          const x = values[i] / scale;
          const step = Math.abs(x) < 2 ** -6 ? 2 ** -9 : 2 ** (Math.floor(Math.log2(Math.abs(x))) - 3);
          expect(Math.abs(back[i] / scale - x)).toBeLessThanOrEqual(step / 2);
        }
      }
    }
  });

  it('fp8 codes round to the nearest e4m3 value, ties to the even code (subnormals, midpoints, -0, clamping)', () => {
    // Every positive e4m3 magnitude by code (0..126), and the exact reference: the nearest,
    // ties to the even code, |x| clamped to 448; -0 gives +0, other negatives their sign.
    const magnitude = (c: number) => ((c >> 3) === 0 ? (c & 7) * 2 ** -9 : (1 + (c & 7) / 8) * 2 ** ((c >> 3) - 7));
    const reference = (x: number) => {
      const a = Math.min(Math.abs(x), 448);
      let best = 0;
      for (let c = 1; c <= 126; c++) {
        const d = Math.abs(magnitude(c) - a), e = Math.abs(magnitude(best) - a);
        if (d < e || (d === e && c % 2 === 0)) best = c;
      }
      return (x < 0 ? 0x80 : 0) | best;
    };
    const inputs: number[] = [0, -0, 1e-30, -1e-30, 500, -1e9, Infinity, -Infinity];
    for (let c = 0; c < 126; c++) {
      const lo = magnitude(c), hi = magnitude(c + 1), mid = (lo + hi) / 2;
      inputs.push(lo, mid, -mid, f32(mid * (1 + 2 ** -20)), f32(mid * (1 - 2 ** -20)));
    }
    const r = rng(5);
    while (inputs.length % 31 !== 0) inputs.push((r() - 0.5) * 2 ** (r() * 24 - 14));
    // Blocks of 32 whose first value is 448: scale code 127 (x 1), so codes are of x itself.
    const blocks = inputs.length / 31;
    const values = new Float32Array(blocks * 32);
    for (let b = 0; b < blocks; b++) {
      values[b * 32] = 448;
      values.set(inputs.slice(b * 31, b * 31 + 31), b * 32 + 1);
    }
    const t = EngramTable.fromFloat32(values, blocks, 32, 'f8e4m3');
    expect([...t.scales!].every((k) => k === 127)).toBe(true);
    for (let i = 0; i < values.length; i++) expect(t.data[i], `value ${values[i]}`).toBe(reference(values[i]));
  });

  it('EngramTable.random: seeded N(0, std^2), the same values for any thread count or row width', () => {
    const rows = 32768, cols = 128;
    const t = EngramTable.random(rows, cols, 'f32', { seed: 9 });
    const x = t.toFloat32();
    let mean = 0, sq = 0, beyond3 = 0;
    for (const v of x) {
      mean += v;
      sq += v * v;
      if (Math.abs(v) > 3) beyond3++;
    }
    mean /= x.length;
    const variance = sq / x.length - mean * mean;
    expect(Math.abs(mean)).toBeLessThan(2e-3); // 4M values: the mean's sd is 5e-4
    expect(Math.abs(variance - 1)).toBeLessThan(3e-3);
    expect(beyond3 / x.length).toBeGreaterThan(0.0025); // 0.0027 for a normal
    expect(beyond3 / x.length).toBeLessThan(0.0029);
    // Histogram against the normal CDF: chi-square over 40 bins of width 0.2 on [-4, 4].
    const erf = (z: number) => {
      const k = 1 / (1 + 0.3275911 * Math.abs(z));
      const y = 1 - ((((1.061405429 * k - 1.453152027) * k + 1.421413741) * k - 0.284496736) * k + 0.254829592) * k * Math.exp(-z * z);
      return z >= 0 ? y : -y;
    };
    const cdf = (z: number) => 0.5 * (1 + erf(z / Math.SQRT2));
    const bins = new Array<number>(40).fill(0);
    for (const v of x) {
      const b = Math.floor((v + 4) * 5);
      if (b >= 0 && b < 40) bins[b]++;
    }
    let chi = 0;
    for (let b = 0; b < 40; b++) {
      const expected = x.length * (cdf((b + 1) / 5 - 4) - cdf(b / 5 - 4));
      chi += (bins[b] - expected) ** 2 / expected;
    }
    expect(chi).toBeLessThan(80); // 39 degrees of freedom: p < 1e-4 beyond 80
    // Element i depends on the seed and i only: any row width (odd ones start rows on the
    // second half of a Box-Muller pair), any thread count.
    const wide = EngramTable.random(2, 33, 'f32', { seed: 9, threads: 1 }).toFloat32();
    expect([...EngramTable.random(1, 66, 'f32', { seed: 9, threads: 2 }).toFloat32()]).toEqual([...wide]);
    const bytes = (table: EngramTable) => Buffer.from(table.data.buffer, table.data.byteOffset, table.data.byteLength);
    expect(Buffer.compare(bytes(EngramTable.random(rows, cols, 'f32', { seed: 9, threads: 1 })), bytes(t))).toBe(0);
    // std scales the values; the fp8 fill is the f32 fill quantised.
    const narrow = EngramTable.random(64, 64, 'f32', { seed: 2, std: 0.02 }).toFloat32();
    const unit = EngramTable.random(64, 64, 'f32', { seed: 2 }).toFloat32();
    for (let i = 0; i < unit.length; i++) expect(Math.abs(narrow[i] - 0.02 * unit[i])).toBeLessThanOrEqual(1e-7 * Math.abs(unit[i]) + 1e-12);
    const fp8 = EngramTable.random(64, 64, 'f8e4m3', { seed: 2 });
    const quantised = EngramTable.random(64, 64, 'f32', { seed: 2 }).convert('f8e4m3');
    expect([...fp8.data]).toEqual([...quantised.data]);
    expect([...fp8.scales!]).toEqual([...quantised.scales!]);
  });

  it('gather reads rows of tables over 2^32 elements (more than a typed array can view)', () => {
    // 2^32 + 64 fp8 elements (untouched pages cost no memory): the last row lies past 2^32.
    const cols = 64;
    const rows = 2 ** 32 / cols + 1;
    const t = EngramTable.allocate(rows, cols, 'f8e4m3');
    new Uint8Array(t.region.buffer as ArrayBuffer, (rows - 1) * cols, cols).fill(0x38); // 1.0
    t.scales!.fill(128, (rows - 1) * 2); // x2
    const got = t.gather(Int32Array.of(rows - 1, 0));
    expect(Array.from(got.slice(0, 2))).toEqual([2, 2]);
    expect(got[cols]).toBe(0);
    expect(() => t.data).toThrow(/more than one typed array can view: use .region/);
  });
});

describe('reduced-precision tables against a float64 recomputation from the rounded table', () => {
  const { hidden, ids, shape } = smallInputs();
  for (const tableDtype of ['bf16', 'f16'] as const) {
    it(`${tableDtype} table`, () => {
      const engram = smallEngram({ tableDtype });
      expect(engram.table.dtype).toBe(tableDtype);
      const rows = engram.hashMapping.hashRows(ids, shape, { layers: [small.config.layer_id], output: 'int32' }).rowIds as Int32Array;
      const want = baselineForward(Float64Array, baselineLayerOf(engram), hidden, rows, shape[0], shape[1]);
      const got = engram.forward(hidden, ids, shape);
      expect(maxRelError(got.gates, want.gates)).toBeLessThan(1e-4);
      expect(maxRelError(got.output, want.output)).toBeLessThan(1e-4);
      // and the rounding moved the result away from the fp32 reference (the table is really reduced)
      expect(maxRelError(got.output, small.output)).toBeGreaterThan(1e-6);
    });
  }
});

describe('fp8 tables in a layer', () => {
  it('rows narrower than a 32-channel scale block are refused with a clear error', () => {
    expect(() => smallEngram({ tableDtype: 'f8e4m3' })).toThrow(/cols must be a multiple of 32 for an fp8 table, got 8/);
  });

  it('an fp8 layer (32-channel rows) equals a float64 recomputation from its rounded table', () => {
    const config = { ...smallConfig(), nEmbedPerNgram: 128 };
    const f32Layer = new Engram(config, { tokenizer: CompressedTokenizer.deepseekV3(), seed: 5 });
    const engram = new Engram(config, { tokenizer: f32Layer.hashMapping.tokenizer, init: 'none', tableDtype: 'f8e4m3' });
    engram.loadStateDict(f32Layer.stateDict()); // quantised on load
    expect(engram.table.dtype).toBe('f8e4m3');
    const { ids, shape } = smallInputs();
    const r = rng(3);
    const hidden = Float32Array.from({ length: shape[0] * shape[1] * 4 * 32 }, () => r() * 4 - 2);
    const rows = engram.hashMapping.hashRows(ids, shape, { layers: [config.layerId], output: 'int32' }).rowIds as Int32Array;
    const want = baselineForward(Float64Array, baselineLayerOf(engram), hidden, rows, shape[0], shape[1]);
    const got = engram.forward(hidden, ids, shape);
    expect(maxRelError(got.gates, want.gates)).toBeLessThan(1e-4);
    expect(maxRelError(got.output, want.output)).toBeLessThan(1e-4);
    const unquantised = f32Layer.forward(hidden, ids, shape);
    expect(maxRelError(got.output, unquantised.output)).toBeGreaterThan(1e-6);
  });
});

describe('tables read in place from a memory-mapped file', () => {
  it('prefetch reads the rows ahead on a worker (readAhead) and the forward gives the same bits', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'engram-readahead-'));
    try {
      const file = path.join(dir, 'layer.safetensors');
      const whole = new Engram({ engramVocabSize: [20_011, 20_011], hiddenSize: 32, nEmbedPerNgram: 64, nHeadPerNgram: 2 }, { seed: 5, tableDtype: 'f8e4m3' });
      whole.saveSafetensors(file);
      const mapped = Engram.fromSafetensors(file);
      expect(mapped.table.mapped).toBe(true);
      expect(whole.table.mapped).toBe(false);
      // Rows far apart: one page (data) and one page (scales) each, at least.
      const rows = Int32Array.of(0, 7, 10_000, 39_999);
      expect(await mapped.table.readAhead(rows)).toBeGreaterThanOrEqual(rows.length + 1);
      expect(await whole.table.readAhead(rows)).toBe(0);
      // The pages are in the page cache now: further calls run one time in 16 only, 2 of
      // these 32. A touch that takes over 20 µs counts as cold and makes the next call run
      // too; on a loaded machine a warm touch can (preempted between its two clock reads:
      // seen once in CI, 3 calls ran), so a few more may run, never most of them.
      const again = [];
      for (let i = 0; i < 32; i++) again.push(await mapped.table.readAhead(rows));
      const ran = again.filter((n) => n > 0).length;
      expect(ran).toBeGreaterThanOrEqual(2);
      expect(ran).toBeLessThanOrEqual(6);
      // A hint never rejects: rows outside the table are the gather's error to report.
      const fresh = Engram.fromSafetensors(file);
      expect(await fresh.table.readAhead(Int32Array.of(-1, 10 ** 9))).toBe(0);
      const ids = Int32Array.from({ length: 64 }, (_, i) => (i * 7919) % 120_000);
      const hidden = Float32Array.from({ length: 64 * 4 * 32 }, (_, i) => Math.sin(i));
      const ticket = mapped.prefetch(ids, [1, 64]);
      const got = mapped.forward(hidden, ids, [1, 64], { ticket }).output;
      const want = whole.forward(hidden, ids, [1, 64]).output;
      expect(Buffer.compare(Buffer.from(got.buffer, got.byteOffset, got.byteLength), Buffer.from(want.buffer, want.byteOffset, want.byteLength))).toBe(0);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
