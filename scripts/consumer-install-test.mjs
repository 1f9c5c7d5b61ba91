#!/usr/bin/env node
// npm run test:install (and .ci/run): the package as a user installs it. Packs the tarball
// (prepack builds and checks the prebuilt binary), installs it into fresh projects with no
// cmake, C++ compiler or nvcc on PATH, once with --ignore-scripts and once with
// --strict-allow-scripts, and runs there: the smoke script (golden hashes, both layers, MoE;
// its output digests must equal the checkout's), every example, the CLI, and a load on a
// platform with no prebuild, whose error must say what it looked for and how to build.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { arm64NodeBinary, arm64Unavailable, runArm64Node } from './arm64-node.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'engram-consumer-'));
const fixture = path.join(root, 'test', 'fixtures', 'hash-default.json');
const smoke = path.join(root, 'scripts', 'consumer-install', 'smoke.mjs');
const MiB = 2 ** 20;
let failures = 0;

function check(ok, what, detail = '') {
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}${!ok && detail ? `\n${detail}` : ''}`);
  if (!ok) failures++;
  return ok;
}

function run(cmd, args, options) {
  const t0 = Date.now();
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 256 * MiB, ...options });
  return { ...r, seconds: (Date.now() - t0) / 1000, output: `${r.stdout ?? ''}${r.stderr ?? ''}` };
}

function which(name) {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    const p = path.join(dir, name);
    if (dir && fs.existsSync(p)) return p;
  }
  return null;
}

function lastJsonLine(text) {
  const line = text.trim().split('\n').reverse().find((l) => l.startsWith('{'));
  return line ? JSON.parse(line) : null;
}

try {
  // The checkout's own outputs, before packing: the digests every install must reproduce.
  const reference = run(process.execPath, [smoke, fixture], { cwd: root });
  if (!check(reference.status === 0, 'smoke script in the checkout', reference.output)) process.exit(1);
  const want = lastJsonLine(reference.stdout);

  // Pack as npm publish would: prepack builds the prebuilt binary, prepare compiles dist/.
  const packed = run('npm', ['pack', '--json', '--pack-destination', scratch], { cwd: root });
  if (!check(packed.status === 0, `npm pack (${packed.seconds.toFixed(0)} s)`, packed.output)) process.exit(1);
  const jsonStart = packed.stdout.lastIndexOf('\n[') + 1;
  const [info] = JSON.parse(packed.stdout.slice(jsonStart));
  const tarball = path.join(scratch, info.filename);
  const files = info.files.map((f) => f.path);
  const prebuilt = info.files.find((f) => /^prebuilds\/linux-x64\/.*\.node$/.test(f.path));
  check(prebuilt !== undefined, 'the tarball holds prebuilds/linux-x64/*.node', files.join('\n'));
  check(!files.some((f) => f.startsWith('build/') || f.startsWith('test/') || f.startsWith('src/')), 'the tarball holds no build/, test/ or src/');
  check(files.includes('LICENSE') && files.includes('dist/index.js') && files.includes('dist/index.d.ts'), 'the tarball holds LICENSE, dist/index.js and its types');
  const armPrebuilt = info.files.find((f) => /^prebuilds\/linux-arm64\/.*\.node$/.test(f.path));
  const crossCompiler = spawnSync('aarch64-linux-gnu-g++', ['--version'], { stdio: 'ignore' }).status === 0;
  if (crossCompiler) check(armPrebuilt !== undefined, 'the tarball holds prebuilds/linux-arm64/*.node (the cross compiler is here)');
  else console.log('note: no arm64 cross compiler here: the tarball has no linux-arm64 binary and the arm64 checks do not run');

  // A PATH with node and npm only: no cmake, no compiler, no nvcc.
  const bin = path.join(scratch, 'bin');
  fs.mkdirSync(bin);
  for (const [name, target] of [['node', process.execPath], ['npm', which('npm')], ['npx', which('npx')], ['sh', '/bin/sh'], ['env', '/usr/bin/env']]) {
    if (target) fs.symlinkSync(fs.realpathSync(target), path.join(bin, name));
  }
  const probe = run('/bin/sh', ['-c', 'for t in cmake c++ g++ gcc cc nvcc make ninja; do command -v $t && exit 1; done; exit 0'], { env: { PATH: bin } });
  check(probe.status === 0, 'the install PATH has no cmake, C/C++ compiler, nvcc, make or ninja', probe.output);
  const npmCache = run('npm', ['config', 'get', 'cache'], { cwd: root }).stdout.trim();
  const cleanEnv = (dir) => ({ PATH: bin, HOME: os.homedir(), TMPDIR: os.tmpdir(), npm_config_cache: npmCache, ENGRAM_CACHE_DIR: path.join(dir, '.engram-cache') });

  const modes = [
    ['ignore-scripts', ['--ignore-scripts']],
    ['strict-allow-scripts', ['--strict-allow-scripts']],
  ];
  const rows = [];
  for (const [mode, flags] of modes) {
    const dir = path.join(scratch, mode);
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: `consumer-${mode}`, version: '1.0.0', private: true, type: 'module' }, null, 2));
    const env = cleanEnv(dir);
    const installed = run('npm', ['install', tarball, '--no-audit', '--no-fund', '--prefer-offline', ...flags], { cwd: dir, env });
    if (!check(installed.status === 0, `[${mode}] npm install of the tarball (${installed.seconds.toFixed(0)} s)`, installed.output)) continue;
    const pkg = path.join(dir, 'node_modules', 'engram-kernels');
    check(!fs.existsSync(path.join(pkg, 'build')), `[${mode}] nothing was built at install`);

    fs.copyFileSync(smoke, path.join(dir, 'smoke.mjs'));
    fs.copyFileSync(fixture, path.join(dir, 'hash-default.json'));
    const s = run(process.execPath, ['smoke.mjs', 'hash-default.json'], { cwd: dir, env });
    if (check(s.status === 0, `[${mode}] smoke: golden hashes, both layers, MoE (${s.seconds.toFixed(1)} s)`, s.output)) {
      const got = lastJsonLine(s.stdout);
      check(got.binary.startsWith('prebuilds/linux-x64/'), `[${mode}] the binary loaded is the prebuild (${got.binary}, cuda ${got.cuda}, ${got.cpuKernel} kernel)`);
      check(JSON.stringify(got.digests) === JSON.stringify(want.digests), `[${mode}] every output has the checkout's bits`, `checkout ${JSON.stringify(want.digests)}\ninstall  ${JSON.stringify(got.digests)}`);
    }
    rows.push({ mode, installSeconds: installed.seconds });
    if (mode !== 'ignore-scripts') continue;

    for (const example of fs.readdirSync(path.join(root, 'examples')).filter((f) => f.endsWith('.mjs')).sort()) {
      fs.copyFileSync(path.join(root, 'examples', example), path.join(dir, example));
      const e = run(process.execPath, [example], { cwd: dir, env });
      check(e.status === 0 && e.stdout.trim() !== '', `[${mode}] examples/${example}`, e.output);
    }
    const cli = run(path.join(dir, 'node_modules', '.bin', 'engram'), ['hash', 'Only Alexander the Great could tame the horse'], { cwd: dir, env });
    check(cli.status === 0 && /Alexander|head/i.test(cli.stdout), `[${mode}] the engram CLI`, cli.output);

    // The same install on Linux arm64 (the package's files are the same; the binary is the
    // arm64 prebuild), under qemu: the exact parts of the smoke (hashes, routes, history)
    // must equal the checkout's; its layers' floats differ from x86-64 by FMA contraction
    // (the golden-fixture suites check them on arm64: npm run test:arm64).
    const armWhy = armPrebuilt ? arm64Unavailable() : 'no linux-arm64 binary in the tarball';
    if (armWhy === null) {
      const armNode = arm64NodeBinary(root);
      const a = runArm64Node(armNode, ['smoke.mjs', 'hash-default.json'], { cwd: dir, env });
      if (check(a.status === 0, `[${mode}, arm64 under qemu] smoke: golden hashes, both layers, MoE`, a.stdout + a.stderr)) {
        const got = lastJsonLine(a.stdout);
        check(got.binary === 'prebuilds/linux-arm64/engram-kernels.glibc.node', `[${mode}, arm64] the binary loaded is the arm64 prebuild (${got.binary}, ${got.cpuKernel} kernel)`);
        const exact = (d) => JSON.stringify([d.hashes, d.moeRoute, d.v41History]);
        check(exact(got.digests) === exact(want.digests), `[${mode}, arm64] hashes, MoE routes and the V4.1 history have the checkout's bits`);
      }
      const e = runArm64Node(armNode, ['hash-sentence.mjs'], { cwd: dir, env });
      check(e.status === 0 && e.stdout.trim() !== '', `[${mode}, arm64] examples/hash-sentence.mjs`, e.stdout + e.stderr);
    } else {
      console.log(`note: arm64 not run: ${armWhy}`);
    }

    // A platform with no prebuild (node-gyp-build honours npm_config_arch).
    const other = run(process.execPath, ['-e', "import('engram-kernels').then((m) => m.buildInfo())"], { cwd: dir, env: { ...env, npm_config_arch: 'riscv64' } });
    const expected = ['could not be loaded on linux-riscv64', `prebuilt binaries in this package: ${armPrebuilt ? 'linux-arm64, ' : ''}linux-x64`, 'no prebuilt binary ships for linux-riscv64', 'npm install --save-dev cmake-js node-addon-api', 'build-native.mjs'];
    check(other.status !== 0 && expected.every((t) => other.stderr.includes(t)), `[${mode}] no prebuild for the platform: the error names it and the source build`, other.output);
  }

  const tarMiB = info.size / MiB;
  const binMiB = prebuilt ? prebuilt.size / MiB : NaN;
  console.log(
    `\npackage: ${info.filename}, ${tarMiB.toFixed(2)} MiB packed, ${(info.unpackedSize / MiB).toFixed(2)} MiB unpacked, ${info.entryCount} files; ` +
      `prebuilt binary ${binMiB.toFixed(2)} MiB (stripped; CUDA sm_80/sm_90 + PTX, CUDA runtime static)` +
      (armPrebuilt ? `, linux-arm64 ${(armPrebuilt.size / MiB).toFixed(2)} MiB (CPU)\n` : '\n') +
      rows.map((r) => `install (${r.mode}, npm cache warm): ${r.installSeconds.toFixed(1)} s`).join('\n'),
  );
} finally {
  if (!process.env.KEEP_CONSUMER_TEST) fs.rmSync(scratch, { recursive: true, force: true });
}
if (failures > 0) {
  console.log(`\n${failures} check(s) failed`);
  process.exit(1);
}
console.log('\nconsumer install: all checks passed');
