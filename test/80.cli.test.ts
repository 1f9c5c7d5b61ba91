import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { afterAll, describe, expect, it, vi } from 'vitest';

import { inspectV41, synthV41 } from '../src/cli/v41.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'engram-cli-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

describe('engram v41 synth / inspect', () => {
  it('writes a checkpoint that inspect reports as consistent, and flags a broken one', () => {
    const log = vi.spyOn(console, 'log').mockImplementation(() => {});
    try {
      const dir = path.join(root, 'ckpt');
      expect(synthV41(dir, 5e-5, 32)).toBe(0);
      expect(inspectV41(dir, true)).toBe(0);
      const report = JSON.parse(String(log.mock.calls.at(-1)?.[0]));
      expect(report.config.layerIds).toEqual([1, 14]);
      expect(report.gatheredBytesPerTokenPerLayer).toBe(24 * 264);
      expect(report.check).toMatch(/^ok/);
      const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
      cfg.text_config.engram_num_embeddings = [5, 5]; // the released config's shape: text fields under text_config
      fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(cfg));
      expect(inspectV41(dir, true)).toBe(1);
      expect(JSON.parse(String(log.mock.calls.at(-1)?.[0])).check).toMatch(/engram_num_embeddings\[0\] = 5/);
    } finally {
      log.mockRestore();
    }
  });
});
