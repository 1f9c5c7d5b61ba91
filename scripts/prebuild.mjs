#!/usr/bin/env node
// npm run prebuild (and prepack): the binaries that ship in the tarball (this machine's,
// and linux-arm64 cross-compiled by scripts/build-arm64.mjs when the cross compiler is here).
// prebuildify builds it through cmake-js (scripts/prebuild-gyp.mjs), strips it and names it
// for node-gyp-build: prebuilds/<platform>-<arch>/engram-kernels.glibc.node (N-API, so one
// file serves every Node >= 20.17). Then it is checked the way a user meets it: loaded in a
// child process, with the CUDA kernels in it unless ENGRAM_CUDA=OFF was asked for (a CPU-only
// binary must never ship by accident because nvcc was missing on the packing machine).
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const target = `${process.platform}-${process.arch}`;
const outDir = path.join(root, 'prebuilds', target);

fs.rmSync(outDir, { recursive: true, force: true });
const cudaWanted = process.env.ENGRAM_CUDA !== 'OFF';
const env = { ...process.env, ...(cudaWanted ? { ENGRAM_CUDA: 'ON' } : {}) };
const prebuildify = path.join(path.dirname(require.resolve('prebuildify/package.json')), 'bin.js');
const built = spawnSync(
  process.execPath,
  [prebuildify, '--napi', '--strip', '--tag-libc', '--node-gyp', path.join(root, 'scripts', 'prebuild-gyp.mjs')],
  { cwd: root, stdio: 'inherit', env },
);
if (built.status !== 0) {
  console.error(`prebuild: prebuildify failed (exit ${built.status ?? built.signal})`);
  process.exit(1);
}

const files = fs.existsSync(outDir) ? fs.readdirSync(outDir).filter((f) => f.endsWith('.node')) : [];
if (files.length !== 1) {
  console.error(`prebuild: expected one .node file in ${outDir}, found ${JSON.stringify(files)}`);
  process.exit(1);
}
const file = path.join(outDir, files[0]);
const probe = `const b = require(${JSON.stringify(file)}).buildInfo(); process.stdout.write(JSON.stringify(b));`;
const loaded = spawnSync(process.execPath, ['-e', probe], { encoding: 'utf8' });
if (loaded.status !== 0) {
  console.error(`prebuild: ${file} does not load:\n${loaded.stderr}`);
  process.exit(1);
}
const info = JSON.parse(loaded.stdout);
if (cudaWanted && info.cuda !== true) {
  console.error('prebuild: the binary has no CUDA backend (nvcc not found?); set ENGRAM_CUDA=OFF to ship a CPU-only build on purpose');
  process.exit(1);
}
const mib = (fs.statSync(file).size / 2 ** 20).toFixed(2);
console.log(`prebuild: ${path.relative(root, file)} (${mib} MiB, cuda ${info.cuda}, loads here with the ${info.cpuKernel} CPU kernel)`);

// Linux arm64, cross-compiled, when this machine has the cross compiler (and always when
// ENGRAM_PREBUILD_ARM64=1 asks for it; =0 skips it).
if (process.arch === 'x64' && process.env.ENGRAM_PREBUILD_ARM64 !== '0') {
  const arm = spawnSync(process.execPath, [path.join(root, 'scripts', 'build-arm64.mjs')], { cwd: root, stdio: 'inherit' });
  if (arm.status === 3 && process.env.ENGRAM_PREBUILD_ARM64 !== '1') {
    fs.rmSync(path.join(root, 'prebuilds', 'linux-arm64'), { recursive: true, force: true });
    console.warn('prebuild: no arm64 cross compiler here, so the package holds no linux-arm64 binary (apt-get install g++-aarch64-linux-gnu)');
  } else if (arm.status !== 0) {
    console.error('prebuild: the linux-arm64 build failed');
    process.exit(1);
  }
}
