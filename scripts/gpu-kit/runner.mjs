// Runs the bundled GPU suite on Node's own test runner: the spec report on stdout, and a
// JSON summary (counts, each failure with its message) for the kit's report.
//   node runner.mjs SUMMARY.json FILE.mjs [FILE.mjs ...]
import fs from 'node:fs';
import path from 'node:path';
import { run } from 'node:test';
import { spec } from 'node:test/reporters';

const [summaryPath, ...files] = process.argv.slice(2);
if (!summaryPath || files.length === 0) {
  console.error('usage: node runner.mjs SUMMARY.json FILE.mjs [FILE.mjs ...]');
  process.exit(2);
}
const summary = { files: files.map((f) => path.basename(f)), passed: 0, failed: 0, skipped: 0, skippedSuites: [], failures: [] };
const stream = run({ files, concurrency: 1, timeout: 600_000 });
stream.on('test:pass', (e) => {
  if (e.skip !== undefined && e.skip !== false) {
    if (e.details?.type === 'suite') summary.skippedSuites.push(e.name);
    else summary.skipped++;
  } else if (e.details?.type !== 'suite') summary.passed++;
});
// What a file printed to stderr: the reason when a whole file fails to load.
const stderrOf = new Map();
stream.on('test:stderr', (e) => {
  const key = e.file ? path.basename(e.file) : '';
  stderrOf.set(key, ((stderrOf.get(key) ?? '') + e.message).slice(-4000));
});
stream.on('test:fail', (e) => {
  // A failing suite is reported once per failing test inside it, and a file that throws
  // while loading (ENGRAM_REQUIRE_GPU with no device) as a test named after the file.
  if (e.details?.type === 'suite' && e.details?.error?.failureType === 'subtestsFailed') return;
  summary.failed++;
  const error = e.details?.error;
  const cause = error?.cause ?? error;
  const file = e.file ? path.basename(e.file) : undefined;
  let message = String(cause?.message ?? cause);
  if (e.nesting === 0 && file !== undefined && e.name.endsWith(file)) message += `\n${(stderrOf.get(file) ?? '').trim()}`;
  summary.failures.push({ name: e.name, file, message: message.slice(0, 4000) });
});
stream.on('end', () => {
  fs.writeFileSync(summaryPath, JSON.stringify(summary, null, 1) + '\n');
  console.log(`GPU suite: ${summary.passed} passed, ${summary.failed} failed, ${summary.skipped} skipped` + (summary.skippedSuites.length ? ` (${summary.skippedSuites.length} suites skipped)` : ''));
  process.exitCode = summary.failed > 0 ? 1 : 0;
});
stream.compose(spec).pipe(process.stdout);
