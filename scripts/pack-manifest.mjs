#!/usr/bin/env node
// The package.json that ships has no lifecycle scripts. npm counts a dependency's
// `prepare` as an install script when the package comes from a tarball, a folder or git,
// so `--strict-allow-scripts` refuses it; and nothing in `scripts` is of use to a user.
// `strip` (the last step of prepack) keeps the checkout's manifest in package.json.orig and
// writes the published one; `restore` (postpack, and prepare as a safety net after a pack
// that failed between the two) puts the checkout's back. The pattern is pinst's.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const manifest = path.join(root, 'package.json');
const backup = path.join(root, 'package.json.orig');

function restore() {
  if (fs.existsSync(backup)) fs.renameSync(backup, manifest);
}

const command = process.argv[2];
if (command === 'restore') {
  restore();
} else if (command === 'strip') {
  restore(); // never back up a manifest that is already stripped
  const text = fs.readFileSync(manifest, 'utf8');
  const pkg = JSON.parse(text);
  fs.writeFileSync(backup, text);
  // postpack stays: npm reads the manifest again after prepack, and it must find the restore.
  pkg.scripts = { postpack: pkg.scripts.postpack };
  fs.writeFileSync(manifest, `${JSON.stringify(pkg, null, 2)}\n`);
} else {
  console.error('usage: pack-manifest.mjs strip|restore');
  process.exit(2);
}
