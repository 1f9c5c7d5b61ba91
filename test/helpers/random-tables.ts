// A digest of seeded random tables: every CPU build must write the same bytes (test/70).
import { createHash } from 'node:crypto';

import { EngramTable } from '../../src/index.js';

/** SHA-256 of EngramTable.random's bytes in each format (an odd row width among them). */
export function randomTablesDigest(): string {
  const h = createHash('sha256');
  for (const [dtype, cols] of [['f32', 33], ['bf16', 64], ['f16', 64], ['f8e4m3', 256]] as const) {
    const t = EngramTable.random(1000, cols, dtype, { seed: 21 });
    h.update(t.data);
    if (t.scales) h.update(t.scales);
  }
  return h.digest('hex');
}
