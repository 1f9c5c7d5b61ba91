// `engram store push`: a checkpoint's Engram tables into the remote tier's store, with
// progress on a TTY and a summary (or --json) at the end.
import fs from 'node:fs';

import { pushCheckpoint } from '../table/remote/push-checkpoint.js';

export async function storePush(
  target: string,
  o: { url?: string; user?: string; password?: string; tls?: boolean; ca?: string; pageRows?: number; buckets?: number; repair?: boolean; json: boolean },
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
