import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { describe, expect, it } from 'vitest';

import { CompressedTokenizer, Engram, EngramModel } from '../src/index.js';
import { smallConfig } from './helpers/forward-small.js';
import { randInt, rng } from './helpers/random.js';

const same = (a: Float32Array, b: Float32Array) => Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0;

describe('EngramModel: layers sharing one hash mapping', () => {
  const tokenizer = CompressedTokenizer.deepseekV3();
  const { layerId: _l, ...base } = smallConfig();
  const config = { ...base, layerIds: [1, 15] };
  const model = new EngramModel(config, { tokenizer, seed: 4 });
  const B = 2;
  const T = 10;
  const r = rng(8);
  const ids = Int32Array.from({ length: B * T }, () => randInt(r, 0, tokenizer.vocabSize - 1));
  const hidden = Float32Array.from({ length: B * T * 4 * 32 }, () => r() * 2 - 1);

  it('hashes once and each layer equals a standalone layer with the same weights', () => {
    const rows = model.hash(ids, [B, T]);
    for (const id of [1, 15]) {
      const alone = new Engram({ ...config, layerId: id }, { tokenizer, init: 'none' });
      alone.loadStateDict(model.layer(id).stateDict());
      expect(same(model.forwardLayer(id, hidden, rows).output, alone.forward(hidden, ids, [B, T]).output)).toBe(true);
    }
    expect(model.layer(1).hashMapping).toBe(model.layer(15).hashMapping);
  });

  it('streams token by token across both layers', () => {
    const rows = model.hash(ids, [B, T]);
    const whole = model.forwardLayer(15, hidden, rows).output;
    const state = model.newState(B);
    for (let t = 0; t < T; t++) {
      const stepIds = Int32Array.of(ids[t], ids[T + t]);
      const stepHidden = new Float32Array(2 * 128);
      stepHidden.set(hidden.subarray(t * 128, (t + 1) * 128), 0);
      stepHidden.set(hidden.subarray((T + t) * 128, (T + t + 1) * 128), 128);
      const stepRows = model.hash(stepIds, [B, 1], { state });
      model.forwardLayer(1, stepHidden, stepRows, { state });
      const out = model.forwardLayer(15, stepHidden, stepRows, { state }).output;
      expect(same(out.subarray(0, 128), whole.subarray(t * 128, (t + 1) * 128))).toBe(true);
      expect(same(out.subarray(128), whole.subarray((T + t) * 128, (T + t + 1) * 128))).toBe(true);
    }
  });

  it('saves and reloads every layer under layers.{id}.engram.', () => {
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'engram-model-')), 'model.safetensors');
    model.saveSafetensors(file);
    const loaded = EngramModel.fromSafetensors(file, { tokenizer });
    const rows = loaded.hash(ids, [B, T]);
    expect(same(loaded.forwardLayer(15, hidden, rows).output, model.forwardLayer(15, hidden, model.hash(ids, [B, T])).output)).toBe(true);
    expect(() => model.forwardLayer(3, hidden, rows)).toThrow(/layerId 3 is not one of the model's layers \[1,15\]/);
    fs.rmSync(path.dirname(file), { recursive: true, force: true });
  });
});
