#!/usr/bin/env node
// npm install hook: use a prebuild or an earlier build when one loads, else build with
// cmake-js. (node-gyp-build's own install bin falls back to node-gyp, which has no use
// for a cmake-js project.) ENGRAM_FORCE_BUILD=1 always rebuilds; ENGRAM_CUDA=OFF builds
// the CPU backend only.
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);

function loadsInChild() {
  // A child process, so that a binary that crashes on load cannot take npm down with it.
  const probe = `require(${JSON.stringify(require.resolve('node-gyp-build'))})(${JSON.stringify(root)}).buildInfo()`;
  const r = spawnSync(process.execPath, ['-e', probe], { stdio: 'ignore' });
  return r.status === 0;
}

if (!process.env.ENGRAM_FORCE_BUILD && loadsInChild()) {
  console.log('engram-kernels: using the existing native binary');
  process.exit(0);
}

const cmakeJs = require.resolve('cmake-js/bin/cmake-js');
console.log('engram-kernels: building the native addon with cmake-js (CUDA when nvcc is found)');
const build = spawnSync(process.execPath, [cmakeJs, 'compile'], { cwd: root, stdio: 'inherit', env: process.env });
if (build.status !== 0) {
  console.error('engram-kernels: native build failed (cmake >= 3.18 and a C++17 compiler are required)');
  process.exit(build.status ?? 1);
}
if (!loadsInChild()) {
  console.error('engram-kernels: the freshly built addon does not load');
  process.exit(1);
}
