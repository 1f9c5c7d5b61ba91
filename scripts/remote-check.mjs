#!/usr/bin/env node
// npm run test:remote — the remote tier's tests against real Redis servers (a cluster of
// 3 masters + 3 replicas, and single servers for AUTH and TLS), which the tests start on
// loopback ports and tear down. Needs Debian's redis-server, redis-cli and openssl; exits
// 0 with a notice when they are missing (ENGRAM_REQUIRE_REDIS=1 makes that a failure).
// Then bench:remote at smoke sizes, which must run to its end.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const missing = ['redis-server', 'redis-cli', 'openssl'].filter((tool) => spawnSync(tool, ['--version'], { stdio: 'ignore' }).error !== undefined);
if (missing.length > 0) {
  const required = process.env.ENGRAM_REQUIRE_REDIS === '1';
  console.log(`test:remote: ${required ? 'FAIL' : 'not run'}: ${missing.join(', ')} not found (Debian: apt-get install redis-server redis-tools openssl)`);
  process.exit(required ? 1 : 0);
}
const vitest = path.join(root, 'node_modules', 'vitest', 'vitest.mjs');
const run = spawnSync(process.execPath, [vitest, 'run', '--config', path.join(root, 'vitest.remote.config.ts')], { cwd: root, stdio: 'inherit' });
if (run.status !== 0) process.exit(run.status ?? 1);
// bench:remote at smoke sizes (a cluster of its own, a tiny checkpoint): it runs to the end.
const bench = spawnSync(process.execPath, ['--import', 'tsx', path.join(root, 'bench', 'remote.ts')], {
  cwd: root,
  stdio: ['ignore', 'ignore', 'inherit'],
  env: { ...process.env, BENCH_SMOKE: '1', BENCH_RESULTS_DIR: fs.mkdtempSync(path.join(os.tmpdir(), 'engram-bench-remote-')) },
});
console.log(`test:remote: bench:remote smoke run ${bench.status === 0 ? 'ok' : 'FAILED'}`);
process.exit(bench.status ?? 1);
