// The kit's report: what run.sh found, as OUTDIR/report.md and report.json, and the exit
// status (non-zero when a GPU test or a sanitizer check failed, or a GPU machine's device
// was not usable).
//   node report.mjs WORKDIR OUTDIR
import fs from 'node:fs';
import path from 'node:path';

const [work, out] = process.argv.slice(2);
const read = (file, parse = (s) => s) => {
  try {
    return parse(fs.readFileSync(file, 'utf8'));
  } catch {
    return undefined;
  }
};
const kit = read(path.join(work, 'kit.json'), JSON.parse) ?? {};
const probe = read(path.join(work, 'probe.json'), JSON.parse);
const probeError = read(path.join(work, 'probe.err'))?.trim();
const smi = (read(path.join(work, 'smi.csv')) ?? '')
  .split('\n')
  .filter((l) => l.trim())
  .map((l) => {
    const [index, name, driver, memory, computeCapability] = l.split(',').map((s) => s.trim());
    return { index, name, driver, memory, computeCapability };
  });
const suite = read(path.join(work, 'tests.json'), JSON.parse);
const canary = read(path.join(work, 'canary.json'), JSON.parse);
const sanitizers = (read(path.join(work, 'sanitizers.tsv')) ?? '')
  .split('\n')
  .filter((l) => l.trim())
  .map((l) => {
    const [tool, file, status, errors, seconds] = l.split('\t');
    return { tool, file, status, errors: Number(errors), seconds: Number(seconds) };
  });
const bench = read(path.join(out, 'gpu.json'), JSON.parse);
const benchMd = read(path.join(out, 'gpu.md'));

const visible = (probe?.devices?.length ?? 0) > 0;
const problems = [];
if (!probe) problems.push(`the addon did not load: ${probeError?.split('\n').slice(-3).join(' ') ?? 'no output'}`);
if (smi.length > 0 && !visible) problems.push(`nvidia-smi lists ${smi.length} GPU(s) but the addon sees none: ${probe?.buildInfo?.deviceUnavailableReason ?? 'it did not load'}`);
if (!canary) problems.push('the CPU suite did not finish (see run.log)');
else if (canary.failed > 0) problems.push(`${canary.failed} CPU test(s) against the golden fixtures failed on this machine`);
if (!suite) problems.push('the GPU suite did not finish (timed out or crashed: see run.log)');
else if (suite.failed > 0) problems.push(`${suite.failed} GPU test(s) failed`);
const sanitizerFailures = sanitizers.filter((s) => s.status === 'errors found' || s.status.startsWith('tests failed'));
if (sanitizerFailures.length > 0) problems.push(`${sanitizerFailures.length} sanitizer check(s) failed`);
if (!bench) problems.push('the benchmark did not finish (see run.log)');
const verdict = problems.length === 0 ? (visible ? 'PASS' : 'PASS (no CUDA device: CPU half only)') : 'FAIL';

const lines = [
  `# GPU check: ${verdict}`,
  '',
  `Kit built from ${kit.builtFrom ?? 'unknown'} on ${kit.builtAt ?? '?'} (Node ${kit.node ?? '?'}); run ${new Date().toISOString()}.`,
  '',
  ...(problems.length ? ['## Problems', '', ...problems.map((p) => `- ${p}`), ''] : []),
  '## Device',
  '',
  smi.length
    ? smi.map((g) => `- GPU ${g.index}: ${g.name}, driver ${g.driver}, ${g.memory}, compute capability ${g.computeCapability}`).join('\n')
    : '- nvidia-smi lists no GPU (or is not installed).',
  `- Addon: ${probe ? `CUDA backend ${probe.buildInfo.cuda ? 'built' : 'NOT built'}, CPU kernel ${probe.buildInfo.cpuKernel}, ${probe.buildInfo.cpuThreads} threads` : 'did not load'}.`,
  `- devices(): ${visible ? probe.devices.map((d) => `${d.name} (cc ${d.computeCapability}, ${(d.totalMemory / 2 ** 30).toFixed(0)} GiB, ${d.multiprocessors} SMs)`).join('; ') : `none (${probe?.buildInfo?.deviceUnavailableReason ?? 'addon not loaded'})`}.`,
  '',
  '## CPU backend against the golden fixtures',
  '',
  canary ? `${canary.passed} passed, ${canary.failed} failed, ${canary.skipped} skipped (files: ${canary.files.join(', ')}).` : 'Did not finish.',
  ...(canary?.failures?.length ? ['', ...canary.failures.map((f) => `- **${f.file ?? ''} › ${f.name}**: ${f.message.split('\n')[0]}`)] : []),
  '',
  '## GPU suite',
  '',
  suite
    ? `${suite.passed} passed, ${suite.failed} failed, ${suite.skipped} skipped${suite.skippedSuites.length ? `; suites skipped: ${suite.skippedSuites.join(', ')}` : ''} (files: ${suite.files.join(', ')}).`
    : 'Did not finish.',
  ...(suite?.failures?.length ? ['', ...suite.failures.map((f) => `- **${f.file ?? ''} › ${f.name}**\n\n  \`\`\`\n  ${f.message.split('\n').join('\n  ')}\n  \`\`\``)] : []),
  '',
  '## compute-sanitizer (small shapes)',
  '',
  '| tool | file | result | errors | seconds |',
  '| --- | --- | --- | --- | --- |',
  ...sanitizers.map((s) => `| ${s.tool} | ${s.file} | ${s.status} | ${s.errors} | ${s.seconds} |`),
  '',
  benchMd ? benchMd.replace(/^# /, '## ') : '## Benchmark\n\nDid not finish.',
];
fs.writeFileSync(path.join(out, 'report.md'), lines.join('\n') + '\n');
fs.writeFileSync(path.join(out, 'report.json'), JSON.stringify({ verdict, problems, kit, smi, probe, canary, suite, sanitizers, bench }, null, 1) + '\n');
console.log(`report: ${verdict}${problems.length ? `: ${problems.join('; ')}` : ''}`);
console.log(`wrote ${path.join(out, 'report.md')}`);
process.exitCode = problems.length === 0 ? 0 : 1;
