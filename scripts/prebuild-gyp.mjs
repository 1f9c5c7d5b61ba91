#!/usr/bin/env node
// Stands in for node-gyp when prebuildify builds (`npm run prebuild`): prebuildify only
// knows how to call a node-gyp-like binary, and this addon is built by cmake-js. The
// N-API build is version-independent, so the --target/--devdir arguments are not needed.
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';

const require = createRequire(import.meta.url);
const cmakeJs = path.join(path.dirname(require.resolve('cmake-js/package.json')), 'bin', 'cmake-js');
const debug = process.argv.includes('--debug');
const result = spawnSync(process.execPath, [cmakeJs, 'rebuild', ...(debug ? ['--debug'] : [])], { stdio: 'inherit' });
process.exit(result.status ?? 1);
