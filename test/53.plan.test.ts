import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { afterAll, describe, expect, it, vi } from 'vitest';

import { planCommand } from '../src/cli/plan.js';
import { OFFLOAD_DEFAULTS, OFFLOAD_PRESETS, planOffload, type OffloadPlanInput } from '../src/index.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'engram-plan-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('the offload model', () => {
  const base: OffloadPlanInput = {
    ...OFFLOAD_DEFAULTS,
    name: 'hand-checked',
    layers: 2,
    rowsPerToken: 24,
    rowBytes: 264,
    pcieGBps: 25,
    hbmGBps: 3000,
    tokensPerSecond: 10_000,
    batchTokens: 100,
    prefetchWindow: 0.05,
    uniqueShare: 0.5,
    cacheHitRate: 0.25,
    cachePageRows: 1,
    hostRowReadNs: 100,
    perStepLatencyUs: 10,
  };

  it('direct and cached modes by hand', () => {
    const [direct, cached] = planOffload(base).modes;
    // step 100 / 10,000 = 10 ms; 4,800 lookups, 2,400 unique rows of 264 B.
    expect(direct.stepSeconds).toBeCloseTo(0.01, 12);
    expect(direct.bytesPerToken).toBeCloseTo((2400 * 264) / 100, 9); // 6,336 B
    expect(direct.pcieSeconds).toBeCloseTo((2400 * 264) / 25e9, 12);
    expect(direct.hostGatherSeconds).toBeCloseTo(2400 * 100e-9, 12);
    expect(direct.deviceGatherSeconds).toBeCloseTo((4800 * 264) / 3000e9, 12);
    // host 240 µs + PCIe 25.3 µs + 20 µs latency < the 500 µs window: only the device gather shows.
    expect(direct.exposedSeconds).toBeCloseTo(direct.deviceGatherSeconds, 12);
    expect(cached.bytesPerToken).toBeCloseTo(direct.bytesPerToken * 0.75, 9);
    const tight = planOffload({ ...base, prefetchWindow: 0 }).modes[0];
    const exposed = 2400 * 100e-9 + (2400 * 264) / 25e9 + 20e-6 + (4800 * 264) / 3000e9;
    expect(tight.exposedSeconds).toBeCloseTo(exposed, 12);
    expect(tight.overhead).toBeCloseTo(exposed / (0.01 + exposed), 12);
  });

  it('remote mode by hand: the cached mode plus the missed pages over the network and a round trip per layer', () => {
    const [, cached, remote] = planOffload({ ...base, networkGBps: 1.25, networkRttUs: 100 }).modes;
    expect(remote.mode).toBe('remote');
    expect(remote.bytesPerToken).toBeCloseTo(cached.bytesPerToken, 9);
    // 2400 unique rows, 25% hits: 1800 missed one-row pages of 264 bytes + 32 header bytes each.
    expect(remote.networkSeconds).toBeCloseTo((1800 * (264 + 32)) / 1.25e9 + 2 * 100e-6, 12);
    const exposed = remote.networkSeconds + remote.hostGatherSeconds + remote.pcieSeconds + 20e-6 - 0.05 * 0.01;
    expect(remote.exposedSeconds).toBeCloseTo(Math.max(0, exposed) + remote.deviceGatherSeconds, 12);
  });

  it('pages of many rows copy a page per missed row', () => {
    const [, rows] = planOffload(base).modes;
    const [, pages] = planOffload({ ...base, cachePageRows: 248 }).modes;
    expect(pages.bytesPerToken).toBeCloseTo(rows.bytesPerToken * 248, 6);
  });

  it('V4.1-Flash looks up 12,672 bytes per token', () => {
    const p = planOffload({ ...OFFLOAD_DEFAULTS, ...OFFLOAD_PRESETS['v41-flash'], uniqueShare: 1 } as OffloadPlanInput);
    expect(p.modes[0].bytesPerToken).toBe(12_672);
  });

  it('bad input is refused', () => {
    expect(() => planOffload({ ...base, pcieGBps: 0 })).toThrow(RangeError);
    expect(() => planOffload({ ...base, cacheHitRate: 1.5 })).toThrow(/shares/);
    expect(() => planOffload({ ...base, layers: Number.NaN })).toThrow(/layers/);
  });

  it('engram plan prints both modes, takes flags and a calibration file', () => {
    const log = vi.spyOn(console, 'log').mockImplementation(() => {});
    const write = vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
    try {
      expect(planCommand({ preset: 'paper-100b', pcie: '50' })).toBe(0);
      const text = String(write.mock.calls.at(-1)?.[0]);
      expect(text).toMatch(/PCIe 50 GB\/s/);
      expect(text).toMatch(/\| direct \|/);
      expect(text).toMatch(/\| cached \|/);
      expect(text).toMatch(/\| remote \|/);
      const file = path.join(dir, 'pager.json');
      fs.writeFileSync(file, JSON.stringify({ calibration: { cacheHitRate: 0.5, uniqueShare: 0.9 } }));
      expect(planCommand({ calibration: file, json: true, batch: '8' })).toBe(0);
      const plan = JSON.parse(String(log.mock.calls.at(-1)?.[0]));
      expect(plan.input.cacheHitRate).toBe(0.5);
      expect(plan.input.batchTokens).toBe(8);
      expect(() => planCommand({ preset: 'gpt-9' })).toThrow(/--preset/);
      expect(() => planCommand({ pcie: 'fast' })).toThrow(/--pcie must be a number/);
    } finally {
      log.mockRestore();
      write.mockRestore();
    }
  });
});
