#!/usr/bin/env node
// npm run build:arm64 — the Linux arm64 (aarch64) addon, cross-compiled on this x86-64
// machine with Debian's g++-aarch64-linux-gnu (cmake/aarch64-linux-gnu.cmake), CPU backend
// only, stripped into prebuilds/linux-arm64/engram-kernels.glibc.node for node-gyp-build.
// `npm pack` runs it through scripts/prebuild.mjs when the cross compiler is installed
// (apt-get install g++-aarch64-linux-gnu); scripts/arm64-check.mjs tests the result under
// qemu. Exits 3 when the cross compiler is missing.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const CXX = 'aarch64-linux-gnu-g++';
const STRIP = 'aarch64-linux-gnu-strip';

if (spawnSync(CXX, ['--version'], { stdio: 'ignore' }).status !== 0) {
  console.error(`build:arm64: ${CXX} is not installed (Debian: apt-get install g++-aarch64-linux-gnu)`);
  process.exit(3);
}
const out = path.join(root, 'build-arm64');
const cmakeJs = require.resolve('cmake-js/bin/cmake-js');
const built = spawnSync(
  process.execPath,
  [cmakeJs, 'compile', '--arch', 'arm64', '--out', out, `--CDCMAKE_TOOLCHAIN_FILE=${path.join(root, 'cmake', 'aarch64-linux-gnu.cmake')}`, '--CDENGRAM_CUDA=OFF'],
  { cwd: root, stdio: 'inherit', env: { ...process.env, ENGRAM_CUDA: 'OFF' } },
);
if (built.status !== 0) {
  console.error('build:arm64: the cross build failed');
  process.exit(1);
}
const binary = path.join(out, 'Release', 'engram_kernels.node');
const file = spawnSync('file', ['-b', binary], { encoding: 'utf8' }).stdout ?? '';
if (file && !/aarch64/.test(file)) {
  console.error(`build:arm64: ${binary} is not an arm64 binary: ${file.trim()}`);
  process.exit(1);
}
const dir = path.join(root, 'prebuilds', 'linux-arm64');
fs.rmSync(dir, { recursive: true, force: true });
fs.mkdirSync(dir, { recursive: true });
const target = path.join(dir, 'engram-kernels.glibc.node');
const stripped = spawnSync(STRIP, ['--strip-all', '-o', target, binary], { stdio: 'inherit' });
if (stripped.status !== 0) {
  console.error('build:arm64: strip failed');
  process.exit(1);
}
console.log(`build:arm64: ${path.relative(root, target)} (${(fs.statSync(target).size / 2 ** 20).toFixed(2)} MiB, CPU backend)`);
