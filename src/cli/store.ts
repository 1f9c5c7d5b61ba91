// `engram store push`: a checkpoint's Engram tables into the remote tier's store, with
// progress on a TTY and a summary (or --json) at the end. `engram store strip`: a copy of
// the checkpoint without the tables' bytes, for the hosts that read them from the store.
import fs from 'node:fs';

import { pushCheckpoint } from '../table/remote/push-checkpoint.js';
import { stripCheckpoint } from '../table/remote/strip.js';

export async function storePush(
  target: string,
  o: { url?: string; user?: string; password?: string; tls?: boolean; ca?: string; pageRows?: number; buckets?: number; pageKeys?: 1 | 2; repair?: boolean; json: boolean },
): Promise<number> {
  if (o.url === undefined) throw new TypeError('--url is required (redis://host:port, or rediss:// for TLS)');
  const tls = o.ca !== undefined ? { ca: fs.readFileSync(o.ca) } : o.tls === true ? true : undefined;
  const tty = process.stderr.isTTY;
  const results = await pushCheckpoint(
    target,
    { url: o.url, username: o.user, password: o.password ?? process.env.ENGRAM_REDIS_PASSWORD, tls },
    {
      pageRows: o.pageRows,
      repair: o.repair,
      buckets: o.buckets,
      pageKeys: o.pageKeys,
      onProgress: tty ? (layer, done, total, phase) => process.stderr.write(`\rlayer ${layer}: ${phase === 'push' ? 'pushing' : 'verifying'} pages ${done}/${total}${done === total && phase === 'verify' ? '\n' : ''}`) : undefined,
    },
  );
  if (o.json) {
    console.log(JSON.stringify(results, null, 1));
  } else {
    for (const r of results) {
      console.log(`layer ${r.layerId} (${r.tensor}): table ${r.tableId}, ${r.pages} pages, ${r.sent} sent (${(r.bytesSent / 2 ** 20).toFixed(1)} MiB), ${r.pages - r.sent} already there, verified, ${r.seconds.toFixed(1)} s`);
    }
  }
  return 0;
}

export function storeStrip(from: string, to: string, o: { json: boolean }): number {
  const tty = process.stderr.isTTY;
  let shown = -1;
  const result = stripCheckpoint(from, to, {
    onProgress: tty
      ? (done, total) => {
          const pct = total > 0 ? Math.floor((100 * done) / total) : 100;
          if (pct === shown) return;
          shown = pct;
          process.stderr.write(`\rcopying all but the tables: ${pct}%${done === total ? '\n' : ''}`);
        }
      : undefined,
  });
  if (o.json) {
    console.log(JSON.stringify(result, null, 1));
  } else {
    console.log(`${to}: ${result.tensors.length} table(s) left out (${(result.bytesLeftOut / 2 ** 30).toFixed(2)} GiB: ${result.tensors.join(', ')}), ${(result.bytesWritten / 2 ** 20).toFixed(1)} MiB written`);
  }
  return 0;
}
