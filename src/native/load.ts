// Finding and loading the addon binary, and saying clearly why when none loads.
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

interface NodeGypBuild {
  (dir: string): unknown;
  resolve(dir: string): string;
}

/** The platform node-gyp-build looks for (it honours npm's `npm_config_arch`/`_platform`). */
export function targetPlatform(): { platform: string; arch: string; libc: string } {
  const platform = process.env.npm_config_platform || process.platform;
  const arch = process.env.npm_config_arch || process.arch;
  const libc = process.env.LIBC || (platform === 'linux' && fs.existsSync('/etc/alpine-release') ? 'musl' : 'glibc');
  return { platform, arch, libc };
}

function listDir(dir: string): string[] {
  try {
    return fs.readdirSync(dir).sort();
  } catch {
    return [];
  }
}

/**
 * The message for a binary that does not load: what this machine is, where the loader
 * looked, what ships, and how to build from source (the message sharp gives is the model).
 */
export function loadFailureMessage(root: string, cause: unknown): string {
  const { platform, arch, libc } = targetPlatform();
  const tuple = `${platform}-${arch}`;
  const reason = cause instanceof Error ? cause.message : String(cause);
  const firstLine = reason.split('\n').find((l) => l.trim() !== '')?.trim() ?? reason;
  const shipped = listDir(path.join(root, 'prebuilds')).filter((d) => fs.statSync(path.join(root, 'prebuilds', d)).isDirectory());
  const napi = process.versions.napi ?? 'unknown';
  const lines = [
    `engram-kernels: the native addon could not be loaded on ${tuple} (${libc}, Node ${process.versions.node}, N-API ${napi}).`,
    `  cause: ${firstLine}`,
    `  looked for: ${path.join(root, 'build', 'Release', '*.node')} (a local build), ` +
      `${path.join(root, 'prebuilds', tuple, '*.node')} (a prebuilt binary)`,
    `  prebuilt binaries in this package: ${shipped.length > 0 ? shipped.join(', ') : 'none'}` +
      ' (N-API, glibc >= 2.36; linux-x64 with the CUDA backend and AVX2/AVX-512 loops picked at run time, linux-arm64 CPU only)',
  ];
  if (/GLIBC_\d|GLIBCXX_\d/.test(reason)) {
    lines.push(`  this system's C library is older than the prebuilt binary needs; build from source (below), or use a distribution with glibc >= 2.36 (Debian 12, Ubuntu 24.04).`);
  } else if (libc === 'musl') {
    lines.push('  the prebuilt binaries are for glibc; on musl (Alpine) build from source (below).');
  } else if (!shipped.includes(tuple)) {
    lines.push(`  no prebuilt binary ships for ${tuple}; build from source (below).`);
  }
  lines.push(
    'To build from source (cmake >= 3.18 and a C++17 compiler; nvcc from CUDA 13 adds the CUDA backend):',
    '  npm install --save-dev cmake-js node-addon-api',
    `  node ${path.join(root, 'scripts', 'build-native.mjs')}`,
    'In a clone of the repository, `npm install` does this.',
  );
  return lines.join('\n');
}

/** Loads the addon under `root` through node-gyp-build: a local build first, then a prebuild. */
export function loadAddon<T>(root: string): T {
  const require = createRequire(import.meta.url);
  const load = require('node-gyp-build') as NodeGypBuild;
  try {
    return load(root) as T;
  } catch (err) {
    throw new Error(loadFailureMessage(root, err), { cause: err });
  }
}
