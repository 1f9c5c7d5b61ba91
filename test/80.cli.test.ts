import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { afterAll, describe, expect, it, vi } from 'vitest';

import { inspectV41, synthV41 } from '../src/cli/v41.js';
import { CompressedTokenizer, findEngramTensors } from '../src/index.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'engram-cli-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

describe('engram v41 synth / inspect', () => {
  it('writes a checkpoint that inspect reports as consistent, and flags a broken one', () => {
    const log = vi.spyOn(console, 'log').mockImplementation(() => {});
    try {
      const dir = path.join(root, 'ckpt');
      expect(synthV41(dir, { rowsScale: 5e-5, hiddenSize: 32 })).toBe(0);
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

describe('the engram command line', () => {
  const cli = (...args: string[]) => {
    const run = spawnSync(process.execPath, ['--import', 'tsx', path.join(__dirname, '..', 'src', 'cli', 'main.ts'), ...args], { encoding: 'utf8', timeout: 120_000 });
    return { status: run.status, out: run.stdout, err: run.stderr };
  };

  it('refuses flags a command does not read and arguments it would ignore, naming them', () => {
    const spec = cli('spec', '--rows-scale', '3');
    expect(spec.status).toBe(1);
    expect(spec.err).toMatch(/engram spec: does not take --rows-scale/);
    expect(spec.err).toMatch(/engram spec \[--v41\] \[--lookup\]/);
    const devices = cli('devices', 'extra');
    expect(devices.status).toBe(1);
    expect(devices.err).toMatch(/engram devices: unexpected argument "extra"/);
    expect(cli('v41', 'inspect', 'a', 'b').err).toMatch(/engram v41 inspect: unexpected argument "b"/);
    expect(cli('hash').err).toMatch(/engram hash: missing argument/);
  });

  it('--help after a command prints that command\'s usage and the options it takes', () => {
    const help = cli('v41', 'synth', '--help');
    expect(help.status).toBe(0);
    expect(help.out).toMatch(/^usage:\n {2}engram v41 synth <dir> .*--tokenizer file\]/);
    expect(help.out).toMatch(/--mp n: DeepSeek's model\{rank\}-mp\{n\} files/);
    expect(help.out).toMatch(/options:\n {2}--tokenizer {2}path of a Hugging Face tokenizer.json/);
    expect(help.out).not.toMatch(/engram hash|engram plan/);
  });

  it('store push checks --page-keys before connecting, and its help names it', () => {
    const file = path.join(root, 'none.safetensors');
    const r = cli('store', 'push', file, '--url', 'redis://127.0.0.1:1', '--page-keys', '3');
    expect(r.status).toBe(1);
    expect(r.err).toMatch(/--page-keys must be 1 or 2, got "3"/);
    expect(cli('store', 'push', '--help').out).toMatch(/--page-keys 1\|2/);
  });

  it('v41 synth checks its numbers before writing anything, and copies the tokenizer it is given', () => {
    const zero = path.join(root, 'hidden-zero');
    const r = cli('v41', 'synth', zero, '--hidden', '0');
    expect(r.status).toBe(1);
    expect(r.err).toMatch(/options.hiddenSize must be in \[1, 65536\], got 0/);
    expect(fs.existsSync(zero)).toBe(false);
    expect(cli('v41', 'synth', zero, '--mp', 'two').err).toMatch(/--mp must be an integer, got "two"/);
    expect(cli('v41', 'synth', zero, '--tokenizer', path.join(root, 'none.json')).err).toMatch(/cannot open '.*none.json': no such file/);
    expect(fs.existsSync(zero)).toBe(false);
    // A tokenizer of our own, marked so the copy can be told from the default.
    const source = CompressedTokenizer.deepseekV3Path();
    const own = path.join(root, 'own-tokenizer.json');
    const json = JSON.parse(fs.readFileSync(source, 'utf8'));
    json.marker = 'engram-cli-test';
    fs.writeFileSync(own, JSON.stringify(json));
    const dir = path.join(root, 'own-tok');
    const ok = cli('v41', 'synth', dir, '--rows-scale', '2e-5', '--hidden', '32', '--tokenizer', own);
    expect(ok.status, ok.err).toBe(0);
    expect(JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer.json'), 'utf8')).marker).toBe('engram-cli-test');
  }, 120_000);
});

describe('engram v41 inspect --verify', () => {
  it('reads every table row: all finite in a synthetic checkpoint, and the first e4m3 NaN code is found', () => {
    const log = vi.spyOn(console, 'log').mockImplementation(() => {});
    try {
      const dir = path.join(root, 'verify');
      expect(synthV41(dir, { rowsScale: 2e-5, hiddenSize: 32 })).toBe(0);
      expect(inspectV41(dir, true, true)).toBe(0);
      const report = JSON.parse(String(log.mock.calls.at(-1)?.[0]));
      expect(report.verified.map((t: { layerId: number; firstBad: unknown }) => [t.layerId, t.firstBad])).toEqual([[1, null], [14, null]]);
      // Put the NaN code 0x7f at row 5, column 3 of layer 14's table, in its file.
      const name = 'layers.14.engram.embed.weight';
      const file = findEngramTensors(dir).fileOf[name];
      const bytes = fs.readFileSync(file);
      const headerLength = Number(bytes.readBigUInt64LE(0)); // the safetensors header, read by hand
      const entry = JSON.parse(bytes.subarray(8, 8 + headerLength).toString('utf8'))[name];
      const cols = entry.shape[1];
      // One byte written in place (no truncation: the first model may still map the file).
      const fd = fs.openSync(file, 'r+');
      fs.writeSync(fd, Uint8Array.of(0x7f), 0, 1, 8 + headerLength + entry.data_offsets[0] + 5 * cols + 3);
      fs.closeSync(fd);
      expect(inspectV41(dir, true, true)).toBe(1);
      const bad = JSON.parse(String(log.mock.calls.at(-1)?.[0]));
      expect(bad.check).toMatch(/layer 14's table holds NaN at row 5, column 3/);
      expect(bad.verified[1].firstBad).toMatchObject({ row: 5, col: 3 });
    } finally {
      log.mockRestore();
    }
  }, 120_000);
});
