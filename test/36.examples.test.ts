// examples/ run as written (each imports 'engram-kernels', which resolves to this checkout's
// dist/), and the README's examples are those files, so neither can rot.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

import { CompressedTokenizer, NgramHashMapping } from '../src/index.js';

const root = path.resolve(import.meta.dirname, '..');
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'engram-examples-'));
afterAll(() => fs.rmSync(scratch, { recursive: true, force: true }));

function runExample(name: string, args: string[] = []) {
  const r = spawnSync(process.execPath, [path.join(root, 'examples', name), ...args], {
    cwd: root,
    encoding: 'utf8',
    env: { ...process.env, TMPDIR: scratch },
    timeout: 120_000,
  });
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  return r.stdout.trim().split('\n');
}

describe('examples/', () => {
  it('hash-sentence.mjs prints each token, its compressed id and its 2-gram heads as the library computes them', () => {
    const text = 'The horse Bucephalus.';
    const lines = runExample('hash-sentence.mjs', [text]);
    const tokenizer = CompressedTokenizer.deepseekV3();
    const ids = tokenizer.encode(text);
    const heads = new NgramHashMapping({}, tokenizer).hash(ids, [1, ids.length], 1);
    const compressed = tokenizer.compress(ids);
    expect(lines).toHaveLength(ids.length);
    lines.forEach((line, t) => {
      const m = /^(".*")\s+(\d+)\s+2-gram heads 0-3: ([\d ]+)$/.exec(line);
      expect(m, line).not.toBeNull();
      expect(JSON.parse(m![1])).toBe(tokenizer.decode(ids[t]));
      expect(Number(m![2])).toBe(compressed[t]);
      expect(m![3].split(' ').map(Number)).toEqual(Array.from(heads.subarray(t * 16, t * 16 + 4)));
    });
  });

  it('paper-layer.mjs runs a layer loaded from safetensors and prints gates in (0, 1)', () => {
    const [line] = runExample('paper-layer.mjs');
    const m = /^layer 1: output (\d+) values, gates of token 0: \[ (.*) \]$/.exec(line);
    expect(m, line).not.toBeNull();
    const gates = m![2].split(', ').map((g) => Number(g.replaceAll("'", '')));
    expect(gates).toHaveLength(4);
    for (const g of gates) expect(g > 0 && g < 1).toBe(true);
  });

  it('v41-checkpoint.mjs runs both layers through the file tier with a prefetch', () => {
    const lines = runExample('v41-checkpoint.mjs');
    expect(lines).toHaveLength(2);
    for (const [i, id] of [1, 14].entries()) {
      const m = new RegExp(`^layer ${id}: output (\\d+) values; (\\d+) rows looked up, (\\d+) copied from the file$`).exec(lines[i]);
      expect(m, lines[i]).not.toBeNull();
      expect(Number(m![2])).toBeGreaterThan(0);
      expect(Number(m![3])).toBeGreaterThan(0);
      expect(Number(m![3])).toBeLessThanOrEqual(Number(m![2]));
    }
  });

  it('moe.mjs routes each token to two distinct experts', () => {
    const lines = runExample('moe.mjs');
    expect(lines).toHaveLength(4);
    for (const line of lines) {
      const m = /^token \d: experts (\d), (\d), output\[0\] (-?\d+\.\d+)$/.exec(line);
      expect(m, line).not.toBeNull();
      expect(m![1]).not.toBe(m![2]);
    }
  });

  it("the README's examples are the files in examples/, as they are", () => {
    const readme = fs.readFileSync(path.join(root, 'README.md'), 'utf8');
    const blocks = [...readme.matchAll(/<!-- example: (examples\/[\w-]+\.mjs) -->\n```js\n([\s\S]*?)```/g)];
    expect(blocks.length).toBeGreaterThanOrEqual(3);
    for (const [, file, body] of blocks) expect(body, file).toBe(fs.readFileSync(path.join(root, file), 'utf8'));
  });
});
