#!/usr/bin/env node
// npm run test:arm64 — the Linux arm64 binary (prebuilds/linux-arm64, cross-compiled by
// scripts/build-arm64.mjs) run under qemu with the arm64 Node.js: the CPU suites against
// the golden fixtures (hashing, both Engram layers, MoE routing and experts), bundled into
// plain ESM on Node's test runner exactly as the GPU kit bundles them. Exits non-zero on
// any failure; exits 0 with a notice when this machine cannot cross-build or emulate
// (ENGRAM_REQUIRE_ARM64=1 makes that a failure).
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { arm64NodeBinary, arm64Unavailable, runArm64Node } from './arm64-node.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const binary = path.join(root, 'prebuilds', 'linux-arm64', 'engram-kernels.glibc.node');

function unavailable(why) {
  const required = process.env.ENGRAM_REQUIRE_ARM64 === '1';
  console.log(`test:arm64: ${required ? 'FAIL' : 'not run'}: ${why}`);
  process.exit(required ? 1 : 0);
}

const why = arm64Unavailable();
if (why) unavailable(why);
if (!fs.existsSync(binary)) {
  const built = spawnSync(process.execPath, [path.join(root, 'scripts', 'build-arm64.mjs')], { stdio: 'inherit' });
  if (built.status === 3) unavailable('no arm64 cross compiler (Debian: apt-get install g++-aarch64-linux-gnu)');
  if (built.status !== 0) process.exit(1);
}
const node = arm64NodeBinary(root);
const kit = fs.mkdtempSync(path.join(os.tmpdir(), 'engram-arm64-'));
let failed = 0;
try {
  // The GPU kit's bundles of the CPU suites, with the arm64 addon in place of the x64 one.
  const kitBuild = spawnSync(process.execPath, [path.join(root, 'scripts', 'gpu-kit', 'build.mjs')], {
    cwd: root,
    encoding: 'utf8',
    env: { ...process.env, ENGRAM_KIT_DIR: kit },
  });
  if (kitBuild.status !== 0) {
    console.log(`test:arm64: FAIL: building the test bundles failed\n${kitBuild.stdout}${kitBuild.stderr}`);
    process.exit(1);
  }
  fs.copyFileSync(binary, path.join(kit, 'pkg', 'build', 'Release', 'engram_kernels.node'));
  const info = runArm64Node(node, ['-p', "JSON.stringify(require('./pkg/build/Release/engram_kernels.node').buildInfo())"], { cwd: kit });
  if (info.status !== 0) {
    console.log(`test:arm64: FAIL: the arm64 addon does not load under qemu:\n${info.stderr}`);
    process.exit(1);
  }
  console.log(`test:arm64: Node ${process.versions.node} arm64 under qemu, addon ${info.stdout.trim()}`);
  for (const suite of fs.readdirSync(path.join(kit, 'canary')).filter((f) => f.endsWith('.mjs')).sort()) {
    const t0 = Date.now();
    // Run as a plain script: node:test runs the file's tests in this process (its test
    // runner would spawn x64-less children that only qemu can run).
    const r = runArm64Node(node, [path.join('canary', suite)], { cwd: kit, env: { ...process.env, ENGRAM_CACHE_DIR: path.join(kit, 'cache') } });
    const count = (name) => Number(r.stdout.match(new RegExp(`^# ${name} (\\d+)$`, 'm'))?.[1] ?? NaN);
    const pass = count('pass');
    const fail = count('fail');
    const ok = r.status === 0 && fail === 0 && pass > 0;
    if (!ok) failed++;
    console.log(`${ok ? 'ok  ' : 'FAIL'} ${suite}: ${pass} passed, ${fail} failed (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
    if (!ok) console.log(r.stdout.split('\n').filter((l) => /not ok|error|expected|actual/i.test(l)).slice(0, 40).join('\n') + r.stderr.slice(-2000));
  }
} finally {
  fs.rmSync(kit, { recursive: true, force: true });
}
console.log(failed ? `test:arm64: ${failed} suite(s) failed` : 'test:arm64: every suite passed on arm64');
process.exit(failed ? 1 : 0);
