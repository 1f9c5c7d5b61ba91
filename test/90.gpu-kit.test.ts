// The GPU check kit builds here and runs as it would on a GPU machine with nothing but a
// driver: no node on PATH and an empty environment. With no CUDA device it must say so
// plainly, still run the CPU half of the comparisons, and exit 0.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { devices } from '../src/index.js';

const root = path.resolve(import.meta.dirname, '..');
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'engram-kit-test-'));
afterAll(() => fs.rmSync(scratch, { recursive: true, force: true }));

describe('GPU check kit (npm run gpu:kit, then run.sh with an empty environment)', () => {
  const kit = path.join(scratch, 'gpu-kit');
  const out = path.join(scratch, 'out');

  it('builds a self-contained kit under its size limit', () => {
    const r = spawnSync(process.execPath, [path.join(root, 'scripts/gpu-kit/build.mjs')], { cwd: root, env: { ...process.env, ENGRAM_KIT_DIR: kit }, encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const manifest = JSON.parse(fs.readFileSync(path.join(kit, 'kit.json'), 'utf8'));
    expect(manifest.node).toBe(process.version);
    expect(manifest.addon.cuda).toBe(true);
    expect(manifest.bytes).toBeLessThanOrEqual(60 * 2 ** 20);
    for (const f of ['run.sh', 'node.xz', 'pkg/dist/index.js', 'pkg/build/Release/engram_kernels.node', 'bench/gpu.mjs', 'bench/torch_peer.py', 'native/CMakeLists.txt']) {
      expect(fs.existsSync(path.join(kit, f)), f).toBe(true);
    }
    // every GPU test file is bundled, and none of them needs node_modules or vitest
    const bundled = fs.readdirSync(path.join(kit, 'tests'));
    expect(bundled.length).toBe(fs.readdirSync(path.join(root, 'test/gpu')).filter((f) => f.endsWith('.test.ts')).length);
    for (const f of bundled) expect(fs.readFileSync(path.join(kit, 'tests', f), 'utf8')).not.toMatch(/from ["']vitest["']/);
  }, 300_000);

  it('runs with no node on PATH, says no device is visible, and runs the CPU half', () => {
    // /usr/bin and /bin as they are, less node, npm and npx: a GPU node's minimal image.
    const bin = path.join(scratch, 'bin');
    fs.mkdirSync(bin);
    for (const dir of ['/usr/bin', '/bin']) {
      for (const f of fs.readdirSync(dir)) {
        if (['node', 'nodejs', 'npm', 'npx'].includes(f) || fs.existsSync(path.join(bin, f))) continue;
        fs.symlinkSync(path.join(dir, f), path.join(bin, f));
      }
    }
    const r = spawnSync('/bin/bash', [path.join(kit, 'run.sh'), out], {
      env: { PATH: bin, HOME: scratch, KIT_QUICK: '1', KIT_NO_PEER: '1' },
      encoding: 'utf8',
      timeout: 240_000,
    });
    const log = r.stdout + r.stderr;
    expect(r.status, log).toBe(0);
    expect(log).toMatch(new RegExp(`the kit's own Node.js[^\\n]*\\nv${process.versions.node.replace(/\./g, '\\.')}\\n`));
    expect(new Set(fs.readdirSync(out))).toEqual(new Set(['run.log', 'report.md', 'report.json', 'gpu.md', 'gpu.json', 'sanitizer.log']));
    const report = JSON.parse(fs.readFileSync(path.join(out, 'report.json'), 'utf8'));
    const bench = JSON.parse(fs.readFileSync(path.join(out, 'gpu.json'), 'utf8'));
    expect(bench.cases.length).toBeGreaterThanOrEqual(7);
    for (const c of bench.cases) expect(c.cpuSeconds).toBeGreaterThan(0);
    // the CPU suites bundled with the test shim ran against the golden fixtures, and passed
    expect(report.canary.failed).toBe(0);
    expect(report.canary.passed).toBeGreaterThanOrEqual(20);
    if (devices().length === 0) {
      expect(log).toContain('No CUDA device is visible');
      expect(report.verdict).toBe('PASS (no CUDA device: CPU half only)');
      expect(report.suite.failed).toBe(0);
      // every GPU suite was skipped (none ran a test), each file having at least one
      expect(report.suite.passed).toBe(0);
      expect(report.suite.skippedSuites.length).toBeGreaterThanOrEqual(report.suite.files.length);
      for (const c of bench.cases) expect(c.cudaSeconds).toBeNull();
    } else {
      expect(report.verdict).toBe('PASS');
    }
  }, 300_000);
});
