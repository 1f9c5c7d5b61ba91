// The message a user sees when no binary loads: the platform, where the loader looked,
// what ships, and how to build from source.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

import { loadAddon, loadFailureMessage } from '../src/native/load.js';
import { packageRoot } from '../src/native/index.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'engram-load-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
const tuple = `${process.platform}-${process.arch}`;

describe('loading the native addon', () => {
  it('loads from this checkout', () => {
    const addon = loadAddon<{ buildInfo(): { cpuThreads: number } }>(packageRoot);
    expect(addon.buildInfo().cpuThreads).toBeGreaterThan(0);
  });

  it('names the platform, the places looked in and the source build when nothing is there', () => {
    const dir = path.join(tmp, 'empty');
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'engram-kernels' }));
    let message = '';
    try {
      loadAddon(dir);
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toContain(`could not be loaded on ${tuple}`);
    expect(message).toContain(`Node ${process.versions.node}`);
    expect(message).toContain(path.join(dir, 'build', 'Release', '*.node'));
    expect(message).toContain(path.join(dir, 'prebuilds', tuple, '*.node'));
    expect(message).toContain('prebuilt binaries in this package: none');
    expect(message).toContain(`no prebuilt binary ships for ${tuple}`);
    expect(message).toContain('npm install --save-dev cmake-js node-addon-api');
    expect(message).toContain(path.join(dir, 'scripts', 'build-native.mjs'));
  });

  it('gives the loader\'s own reason when a prebuild is there but does not load', () => {
    const dir = path.join(tmp, 'broken');
    fs.mkdirSync(path.join(dir, 'prebuilds', tuple), { recursive: true });
    fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'engram-kernels' }));
    fs.writeFileSync(path.join(dir, 'prebuilds', tuple, 'engram-kernels.glibc.node'), 'not an ELF file');
    let error: Error | undefined;
    try {
      loadAddon(dir);
    } catch (err) {
      error = err as Error;
    }
    expect(error?.message).toMatch(/cause: .*(invalid ELF header|file too short)/);
    expect(error?.message).toContain(`prebuilt binaries in this package: ${tuple}`);
    expect(error?.message).not.toContain('no prebuilt binary ships');
    expect(error?.cause).toBeInstanceOf(Error);
  });

  it('explains a C library older than the prebuild needs', () => {
    const cause = new Error("/lib/x86_64-linux-gnu/libc.so.6: version `GLIBC_2.36' not found (required by engram-kernels.glibc.node)");
    const message = loadFailureMessage(packageRoot, cause);
    expect(message).toContain("version `GLIBC_2.36' not found");
    expect(message).toContain('glibc >= 2.36');
  });
});
