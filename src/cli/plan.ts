// `engram plan`: bytes over PCIe and the throughput lost when Engram tables live in host
// memory, for the presets (DeepSeek-V4.1-Flash, the paper's 100B table) or any geometry
// and hardware given as flags; optionally calibrated by `npm run bench:pager` results.
import fs from 'node:fs';

import { formatPlan, OFFLOAD_DEFAULTS, OFFLOAD_PRESETS, planOffload, type OffloadPlanInput } from '../table/plan.js';

export const PLAN_FLAGS = {
  preset: { type: 'string' },
  layers: { type: 'string' },
  'rows-per-token': { type: 'string' },
  'row-bytes': { type: 'string' },
  'table-gib': { type: 'string' },
  pcie: { type: 'string' },
  hbm: { type: 'string' },
  'tokens-per-second': { type: 'string' },
  batch: { type: 'string' },
  window: { type: 'string' },
  'unique-share': { type: 'string' },
  'hit-rate': { type: 'string' },
  'page-rows': { type: 'string' },
  'host-row-ns': { type: 'string' },
  'latency-us': { type: 'string' },
  'network-gbps': { type: 'string' },
  'rtt-us': { type: 'string' },
  calibration: { type: 'string' },
} as const;

export const PLAN_USAGE = `  engram plan [--preset v41-flash|paper-100b] [--pcie GB/s] [--hbm GB/s] [--tokens-per-second n]
              [--batch n] [--window share] [--hit-rate share] [--page-rows n] [--unique-share share]
              [--layers n] [--rows-per-token n] [--row-bytes n] [--table-gib n]
              [--host-row-ns ns] [--latency-us µs] [--network-gbps GB/s] [--rtt-us µs]
              [--calibration bench/results/pager.json|remote.json] [--json]
                                        predicted PCIe bytes per token and throughput lost with the
                                        tables in host memory, direct (no cache) and cached, and
                                        in a remote store (Redis Cluster) behind the cache`;

/** Measured inputs from a bench:pager result file. */
function calibration(file: string): Partial<OffloadPlanInput> {
  const json = JSON.parse(fs.readFileSync(file, 'utf8')) as { calibration?: Partial<OffloadPlanInput> };
  if (json.calibration === undefined || typeof json.calibration !== 'object') throw new TypeError(`'${file}' has no calibration entry (write it with npm run bench:pager or bench:remote)`);
  return json.calibration;
}

export function planCommand(values: Record<string, string | boolean | undefined>): number {
  const preset = (values.preset as string | undefined) ?? 'v41-flash';
  if (!Object.prototype.hasOwnProperty.call(OFFLOAD_PRESETS, preset)) throw new RangeError(`--preset must be one of ${Object.keys(OFFLOAD_PRESETS).join(', ')}, got '${preset}'`);
  const number = (flag: string): number | undefined => {
    const v = values[flag];
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0) throw new RangeError(`--${flag} must be a number >= 0, got '${String(v)}'`);
    return n;
  };
  const given: Partial<OffloadPlanInput> = {
    layers: number('layers'),
    rowsPerToken: number('rows-per-token'),
    rowBytes: number('row-bytes'),
    tableBytes: number('table-gib') === undefined ? undefined : number('table-gib')! * 2 ** 30,
    pcieGBps: number('pcie'),
    hbmGBps: number('hbm'),
    tokensPerSecond: number('tokens-per-second'),
    batchTokens: number('batch'),
    prefetchWindow: number('window'),
    uniqueShare: number('unique-share'),
    cacheHitRate: number('hit-rate'),
    cachePageRows: number('page-rows'),
    hostRowReadNs: number('host-row-ns'),
    perStepLatencyUs: number('latency-us'),
    networkGBps: number('network-gbps'),
    networkRttUs: number('rtt-us'),
  };
  const defined = Object.fromEntries(Object.entries(given).filter(([, v]) => v !== undefined));
  const measured = typeof values.calibration === 'string' ? calibration(values.calibration) : {};
  const input = { name: preset, ...OFFLOAD_DEFAULTS, ...OFFLOAD_PRESETS[preset], ...measured, ...defined } as OffloadPlanInput;
  const plan = planOffload(input);
  if (values.json) console.log(JSON.stringify(plan, null, 1));
  else process.stdout.write(formatPlan(plan));
  return 0;
}
