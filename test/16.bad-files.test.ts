// Files that are not what they claim: a FIFO (whose open would block forever), a
// directory, a device, a checkpoint index pointing outside its directory, a config that
// is not JSON. Each is refused before anything is read, naming the file.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { CompressedTokenizer, DeepseekV41EngramModel, readSafetensors, writeSafetensors, writeSyntheticV41Checkpoint } from '../src/index.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'engram-bad-files-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('non-regular files are refused, never opened', () => {
  const fifo = path.join(dir, 'pipe.safetensors');
  expect(spawnSync('mkfifo', [fifo]).status).toBe(0);

  it('readSafetensors and CompressedTokenizer.fromFile refuse a FIFO, a directory and a device by name', () => {
    expect(() => readSafetensors(fifo)).toThrow(/path '.*pipe.safetensors' is a FIFO, not a regular file/);
    expect(() => readSafetensors(dir)).toThrow(/is a directory, not a regular file/);
    expect(() => readSafetensors('/dev/zero')).toThrow(/'\/dev\/zero' is a device, not a regular file/);
    expect(() => CompressedTokenizer.fromFile(fifo)).toThrow(/is a FIFO, not a regular file/);
    expect(() => readSafetensors(path.join(dir, 'nothing.safetensors'))).toThrow(/cannot open '.*nothing.safetensors': no such file/);
  });
});

describe('checkpoint directories stay closed', () => {
  const ckpt = path.join(dir, 'v41');
  writeSyntheticV41Checkpoint(ckpt, { rowsScale: 2e-5, hiddenSize: 64, hcMult: 4, seed: 2 });
  const index = path.join(ckpt, 'model.safetensors.index.json');
  const original = fs.readFileSync(index, 'utf8');
  const withEntry = (entry: string) => {
    const json = JSON.parse(original);
    const first = Object.keys(json.weight_map)[0];
    json.weight_map[first] = entry;
    fs.writeFileSync(index, JSON.stringify(json));
  };
  afterAll(() => fs.writeFileSync(index, original));

  it("an index entry outside the directory ('../', absolute, a link out) is refused before it is read", () => {
    const outside = path.join(dir, 'outside.safetensors');
    writeSafetensors(outside, { 'layers.1.engram.q_weight': { dtype: 'F32', shape: [1], data: new Float32Array(1) } });
    for (const entry of ['../outside.safetensors', outside, '../../../../etc/passwd']) {
      withEntry(entry);
      expect(() => DeepseekV41EngramModel.fromCheckpoint(ckpt), entry).toThrow(/weight_map entry '.*' points outside the checkpoint directory/);
    }
    fs.symlinkSync(outside, path.join(ckpt, 'link.safetensors'));
    withEntry('link.safetensors');
    expect(() => DeepseekV41EngramModel.fromCheckpoint(ckpt)).toThrow(/weight_map entry 'link.safetensors' is a link out of the checkpoint directory/);
    fs.writeFileSync(index, original);
    expect(DeepseekV41EngramModel.fromCheckpoint(ckpt).layers.size).toBe(2);
  });

  it('a config.json or index that is not JSON is refused naming the file', () => {
    const config = path.join(ckpt, 'config.json');
    const text = fs.readFileSync(config, 'utf8');
    fs.writeFileSync(config, text.slice(0, 40));
    try {
      expect(() => DeepseekV41EngramModel.fromCheckpoint(ckpt)).toThrow(/'.*config.json' is not valid JSON/);
    } finally {
      fs.writeFileSync(config, text);
    }
    fs.writeFileSync(index, '{"weight_map": ');
    expect(() => DeepseekV41EngramModel.fromCheckpoint(ckpt)).toThrow(/'.*model.safetensors.index.json' is not valid JSON/);
    fs.writeFileSync(index, original);
  });

  it('config values no layer can have (max n-gram 0, no heads, no branches) are refused naming the file and field', () => {
    const config = path.join(ckpt, 'config.json');
    const text = fs.readFileSync(config, 'utf8');
    const withField = (name: string, value: unknown) => {
      const json = JSON.parse(text);
      (json.text_config ?? json)[name] = value;
      fs.writeFileSync(config, JSON.stringify(json));
    };
    try {
      withField('engram_max_ngram_size', 0);
      expect(() => DeepseekV41EngramModel.fromCheckpoint(ckpt)).toThrow(/config.json: 'engram_max_ngram_size' must be in \[2, 16\], got 0/);
      withField('engram_n_heads', 0);
      expect(() => DeepseekV41EngramModel.fromCheckpoint(ckpt)).toThrow(/config.json: 'engram_n_heads' must be in \[1, 4096\], got 0/);
      withField('hc_mult', 0);
      expect(() => DeepseekV41EngramModel.fromCheckpoint(ckpt)).toThrow(/config.json: 'hc_mult' must be in \[1, 64\], got 0/);
    } finally {
      fs.writeFileSync(config, text);
    }
    expect(DeepseekV41EngramModel.fromCheckpoint(ckpt).config.hcMult).toBe(4);
  });
});
