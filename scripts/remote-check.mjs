#!/usr/bin/env node
// npm run test:remote — the remote tier's tests against real Redis servers (a cluster of
// 3 masters + 3 replicas, and single servers for AUTH and TLS), which the tests start on
// loopback ports and tear down. Needs Debian's redis-server, redis-cli and openssl; exits
// 0 with a notice when they are missing (ENGRAM_REQUIRE_REDIS=1 makes that a failure).
import { spawnSync } from 'node:child_process';
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
process.exit(run.status ?? 1);
