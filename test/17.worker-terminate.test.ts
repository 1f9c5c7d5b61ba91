// A worker thread terminated while the addon loads or while its async calls run: the
// thread's environment can no longer run JS, and an N-API failure there used to escape
// as a C++ throw (std::terminate: SIGABRT for the whole process). Run in a child process,
// which must finish every round and exit 0.
import { spawnSync } from 'node:child_process';
import path from 'node:path';

import { describe, expect, it } from 'vitest';

describe('worker threads terminated mid-call', () => {
  it('terminating workers during load, hashRowsAsync, Engram.forwardAsync, MoE.forwardAsync and forwardRowsAsync leaves the process alive', () => {
    const script = path.join(__dirname, 'helpers', 'terminate-workers.ts');
    const run = spawnSync(process.execPath, ['--import', 'tsx', script, 'load', 'hash', 'engram', 'moe', 'v41'], { encoding: 'utf8', timeout: 240_000 });
    expect(run.signal, run.stderr).toBeNull();
    expect(run.status, run.stderr).toBe(0);
    expect(JSON.parse(run.stdout.trim().split('\n').at(-1)!)).toEqual({ kinds: ['load', 'hash', 'engram', 'moe', 'v41'], rounds: 40, survived: true });
  }, 300_000);
});
