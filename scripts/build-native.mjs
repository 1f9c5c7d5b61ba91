#!/usr/bin/env node
// Builds the native addon from source with cmake-js, unless a binary already loads (a
// prebuild from the tarball, or an earlier build). The package has no install script (npm
// blocks dependencies' scripts by default), so this runs:
//   - in a clone, from `prepare` (npm install / npm ci);
//   - for a user on a platform without a prebuild, by hand:
//       npm install --save-dev cmake-js node-addon-api
//       node node_modules/engram-kernels/scripts/build-native.mjs
// ENGRAM_FORCE_BUILD=1 always rebuilds; ENGRAM_CUDA=OFF builds the CPU backend only.
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);

function resolveOrNull(id) {
  try {
    return require.resolve(id);
  } catch {
    return null;
  }
}

function loadsInChild() {
  // A child process, so that a binary that crashes on load cannot take npm down with it.
  const gypBuild = resolveOrNull('node-gyp-build');
  if (gypBuild === null) return false;
  const probe = `require(${JSON.stringify(gypBuild)})(${JSON.stringify(root)}).buildInfo()`;
  const r = spawnSync(process.execPath, ['-e', probe], { stdio: 'ignore' });
  return r.status === 0;
}

if (!process.env.ENGRAM_FORCE_BUILD && loadsInChild()) {
  console.log('engram-kernels: a native binary loads already (prebuild or earlier build); nothing to build');
  process.exit(0);
}

const cmakeJs = resolveOrNull('cmake-js/bin/cmake-js');
if (cmakeJs === null || resolveOrNull('node-addon-api') === null) {
  console.error(
    'engram-kernels: building from source needs cmake-js and node-addon-api beside this package:\n' +
      '  npm install --save-dev cmake-js node-addon-api\n' +
      'and cmake >= 3.18 with a C++17 compiler (nvcc adds the CUDA backend).',
  );
  process.exit(1);
}
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
