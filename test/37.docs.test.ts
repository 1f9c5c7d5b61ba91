// The front door and the docs: the README stays short, every link lands, and the generated
// pages (docs/api.md from the TSDoc, docs/performance.md from bench/results) are current.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const root = path.resolve(import.meta.dirname, '..');
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'engram-docs-'));
afterAll(() => fs.rmSync(scratch, { recursive: true, force: true }));
const read = (f: string) => fs.readFileSync(path.join(root, f), 'utf8');
const pages = ['README.md', ...fs.readdirSync(path.join(root, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)];

// GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens.
// A repeated heading gets -1, -2, ...; explicit <a id> anchors count too.
const slug = (heading: string) => heading.trim().toLowerCase().replace(/[^\p{L}\p{N}\s_-]/gu, '').replace(/\s/g, '-');
function anchors(markdown: string): Set<string> {
  const found = new Set<string>();
  const seen = new Map<string, number>();
  for (const [, heading] of markdown.replace(/```[\s\S]*?```/g, '').matchAll(/^#+ (.*)$/gm)) {
    const base = slug(heading);
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    found.add(n === 0 ? base : `${base}-${n}`);
  }
  for (const [, id] of markdown.matchAll(/<a id="([^"]+)"/g)) found.add(id);
  return found;
}

describe('README and docs/', () => {
  it('the README is a front door: at most 150 lines, with the quick start and the docs linked', () => {
    const readme = read('README.md');
    expect(readme.trimEnd().split('\n').length).toBeLessThanOrEqual(150);
    expect(readme).toContain('npm install && npm run demo\nnpm test');
    for (const doc of ['api', 'guide', 'checkpoints', 'performance', 'architecture', 'troubleshooting']) expect(readme).toContain(`(docs/${doc}.md)`);
  });

  it('every relative link and image in the README and docs/ points at a file (and heading) that exists', () => {
    const broken: string[] = [];
    for (const page of pages) {
      const text = read(page).replace(/```[\s\S]*?```/g, '');
      for (const [, target] of text.matchAll(/\]\(([^)\s]+)\)/g)) {
        if (/^[a-z]+:/.test(target)) continue;
        const [file, anchor] = target.split('#');
        const resolved = file === '' ? path.join(root, page) : path.resolve(path.dirname(path.join(root, page)), file);
        if (!fs.existsSync(resolved)) {
          broken.push(`${page}: ${target}`);
          continue;
        }
        if (anchor && resolved.endsWith('.md')) {
          if (!anchors(fs.readFileSync(resolved, 'utf8')).has(anchor)) broken.push(`${page}: ${target} (no such heading)`);
        }
      }
    }
    expect(broken).toEqual([]);
  });

  it('LICENSE is the MIT licence that package.json names', () => {
    expect(read('LICENSE')).toMatch(/^MIT License\n/);
    expect(JSON.parse(read('package.json')).license).toBe('MIT');
  });

  it('docs/api.md is what TypeDoc makes of the current source (npm run docs:api)', () => {
    const out = path.join(scratch, 'api.md');
    const r = spawnSync(process.execPath, [path.join(root, 'scripts', 'docs-api.mjs'), '--out', out], { cwd: root, encoding: 'utf8' });
    expect(r.status, r.stdout + r.stderr).toBe(0);
    expect(fs.readFileSync(out, 'utf8') === read('docs/api.md'), 'docs/api.md is stale: run npm run docs:api').toBe(true);
  }, 120_000);

  it('docs/performance.md and its chart are what bench:summary makes of bench/results/*.json', () => {
    const results = path.join(scratch, 'results');
    const docs = path.join(scratch, 'docs');
    fs.cpSync(path.join(root, 'bench', 'results'), results, { recursive: true });
    const r = spawnSync(process.execPath, [path.join(root, 'scripts', 'bench-summary.mjs')], {
      cwd: root,
      encoding: 'utf8',
      env: { ...process.env, BENCH_RESULTS_DIR: results, DOCS_DIR: docs },
    });
    expect(r.status, r.stdout + r.stderr).toBe(0);
    for (const f of ['performance.md', 'performance-ratios.svg']) {
      expect(fs.readFileSync(path.join(docs, f), 'utf8') === read(`docs/${f}`), `docs/${f} is stale: run npm run bench:summary`).toBe(true);
    }
    expect(fs.readFileSync(path.join(results, 'summary.md'), 'utf8')).toBe(read('bench/results/summary.md'));
  });
});
