#!/usr/bin/env node
// Stands in for node-gyp when prebuildify builds (`npm run prebuild`): prebuildify only
// knows how to call a node-gyp-like binary, and this addon is built by cmake-js. The
// N-API build is version-independent, so the --target/--devdir arguments are not needed.
// An incremental `cmake-js compile` by default, so that packing right after `npm ci`
// (which built the addon) costs a link, not a second CUDA build; ENGRAM_PREBUILD_CLEAN=1
// rebuilds from scratch.
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';

const require = createRequire(import.meta.url);
const cmakeJs = path.join(path.dirname(require.resolve('cmake-js/package.json')), 'bin', 'cmake-js');
const debug = process.argv.includes('--debug');
const verb = process.env.ENGRAM_PREBUILD_CLEAN === '1' ? 'rebuild' : 'compile';
const result = spawnSync(process.execPath, [cmakeJs, verb, ...(debug ? ['--debug'] : [])], { stdio: 'inherit' });
process.exit(result.status ?? 1);
