// A build without CUDA (ENGRAM_CUDA=OFF, or no nvcc) links with no stub per CUDA entry
// point, loads, reports why there is no device, and refuses every CUDA call clearly.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

const root = path.resolve(import.meta.dirname, '..');
const out = fs.mkdtempSync(path.join(os.tmpdir(), 'engram-cpu-only-'));
afterAll(() => fs.rmSync(out, { recursive: true, force: true }));

describe('the CPU-only build (ENGRAM_CUDA=OFF)', () => {
  it('builds, loads, and refuses CUDA calls with a clear error', () => {
    const cmakeJs = createRequire(import.meta.url).resolve('cmake-js/bin/cmake-js');
    const r = spawnSync(process.execPath, [cmakeJs, 'compile', '-O', out], { cwd: root, env: { ...process.env, ENGRAM_CUDA: 'OFF' }, encoding: 'utf8' });
    expect(r.status, (r.stdout + r.stderr).slice(-3000)).toBe(0);
    const addon = createRequire(import.meta.url)(path.join(out, 'Release', 'engram_kernels.node'));
    expect(addon.buildInfo().cuda).toBe(false);
    expect(addon.devices()).toEqual([]);
    expect(addon.buildInfo().deviceUnavailableReason).toMatch(/no CUDA backend \(built with ENGRAM_CUDA=OFF or without nvcc\)/);
    const refused = /device 'cuda' was requested but this build of engram-kernels has no CUDA backend/;
    expect(() =>
      addon.moeUploadCuda({
        experts: 1, dim: 1, gateWeight: new Float32Array(1), deviceIndex: 0,
        gateUp: { format: 'f32', n: 2, k: 1, count: 1, codes: new Uint8Array(8) },
        down: { format: 'f32', n: 1, k: 1, count: 1, codes: new Uint8Array(4) },
      }),
    ).toThrow(refused);
    expect(() =>
      addon.pagerCreate({
        rows: 10, rowBytes: 4, scaleRowBytes: 0, pageRows: 1, slots: 4, hotRows: 0, eviction: 0, simulate: false, bytesPerSecond: 0,
        device: 0, tableDtype: 0, tableCols: 1, table: new ArrayBuffer(40), tableByteOffset: 0, tableRows: 10, tableScalesByteOffset: 0,
      }),
    ).toThrow(refused);
    // the CPU backend works
    const out32 = new Int32Array(8);
    addon.ngramHashes({
      batch: 1, seqLen: 4, layers: 1, maxNgram: 3, headsPerNgram: 1, padId: 0, compressedVocabSize: 3,
      ids: Int32Array.of(0, 1, 2, 1), lookup: Int32Array.of(0, 1, 2), multipliers: BigInt64Array.of(3n, 5n, 7n), primes: BigUint64Array.of(11n, 13n),
      out: out32, device: 'cpu', deviceIndex: 0, threads: 0,
    });
    expect(out32.some((v) => v !== 0)).toBe(true);
    expect(() => addon.ngramHashes({
      batch: 1, seqLen: 4, layers: 1, maxNgram: 3, headsPerNgram: 1, padId: 0, compressedVocabSize: 3,
      ids: Int32Array.of(0, 1, 2, 1), lookup: Int32Array.of(0, 1, 2), multipliers: BigInt64Array.of(3n, 5n, 7n), primes: BigUint64Array.of(11n, 13n),
      out: out32, device: 'cuda', deviceIndex: 0, threads: 0,
    })).toThrow(refused);
  }, 900_000);
});
