// A model of Engram table offload on a GPU: how many bytes cross PCIe per token and how
// much of a step the copies cannot hide, for the paper's direct mode (every activated
// row copied from pinned host memory) and a cached mode (a device cache with a measured
// hit rate). It is calibrated by what the benchmarks measure (hit rates, dedup share,
// the host's random-row read time); the GPU figures are the user's (or defaults).
export interface OffloadPlanInput {
  name: string;
  /** Engram layers in the model. */
  layers: number;
  /** Rows gathered per token per layer (V4.1: 24; the paper's default: 16). */
  rowsPerToken: number;
  /** Bytes of one row with its scales (V4.1: 256 fp8 + 8 UE8M0 = 264). */
  rowBytes: number;
  /** All tables, bytes (what host memory holds). */
  tableBytes: number;
  /** Host -> device bandwidth, GB/s (PCIe Gen4 x16 practical: 25; Gen5: 50). */
  pcieGBps: number;
  /** Device memory bandwidth, GB/s (the gather from the cache or staging buffer). */
  hbmGBps: number;
  /** The model's tokens/s without offload (sets the step time the copies hide behind). */
  tokensPerSecond: number;
  /** Tokens per step (decode: the batch). */
  batchTokens: number;
  /** Share of a step's compute that runs before the first Engram layer (the prefetch window). */
  prefetchWindow: number;
  /** Unique rows / lookups within one step (copies are deduplicated). */
  uniqueShare: number;
  /** Cached mode: measured row hit rate and rows per page (bytes per miss). */
  cacheHitRate: number;
  cachePageRows: number;
  /** Host time to read one random row from RAM, ns (measured by the benchmarks). */
  hostRowReadNs: number;
  /** Fixed cost per step per layer (launch, event, copy command), µs. */
  perStepLatencyUs: number;
  /** Remote tier: bandwidth between the host and the store (Redis Cluster), GB/s (10 GbE: 1.25). */
  networkGBps: number;
  /** Remote tier: one pipelined round trip to the store per step and layer, µs. */
  networkRttUs: number;
}

export interface OffloadModePlan {
  mode: 'direct' | 'cached' | 'remote';
  bytesPerToken: number;
  /** Remote: seconds per step reading the missed pages from the store (bandwidth and round trip). */
  networkSeconds: number;
  /** Seconds per step: host gather, PCIe copy, device gather. */
  hostGatherSeconds: number;
  pcieSeconds: number;
  deviceGatherSeconds: number;
  stepSeconds: number;
  /** What the prefetch window does not cover. */
  exposedSeconds: number;
  /** exposed / step: the throughput lost. */
  overhead: number;
}

export interface OffloadPlan {
  input: OffloadPlanInput;
  modes: OffloadModePlan[];
}

export const OFFLOAD_PRESETS: Record<string, Partial<OffloadPlanInput>> = {
  // DeepSeek-V4.1-Flash: layers 1 and 14, 24 rows of 264 bytes, 188.8 GiB of tables.
  'v41-flash': { name: 'DeepSeek-V4.1-Flash', layers: 2, rowsPerToken: 24, rowBytes: 264, tableBytes: 188.8 * 2 ** 30, prefetchWindow: 1 / 43 },
  // The paper's 100B-parameter table in host memory. Row width and layer count are this
  // preset's assumptions (2 layers, 2-/3-grams x 8 heads, bf16 rows of 160 channels):
  // pass your model's own.
  'paper-100b': { name: 'paper, 100B-parameter table (assumed geometry)', layers: 2, rowsPerToken: 16, rowBytes: 320, tableBytes: 100e9 * 2, prefetchWindow: 2 / 30 },
};

export const OFFLOAD_DEFAULTS: Omit<OffloadPlanInput, 'name'> = {
  layers: 2,
  rowsPerToken: 24,
  rowBytes: 264,
  tableBytes: 188.8 * 2 ** 30,
  pcieGBps: 25,
  hbmGBps: 3350,
  tokensPerSecond: 10_000,
  batchTokens: 64,
  prefetchWindow: 0.03,
  uniqueShare: 1,
  cacheHitRate: 0.3,
  cachePageRows: 1,
  hostRowReadNs: 100,
  perStepLatencyUs: 10,
  networkGBps: 1.25,
  networkRttUs: 100,
};

export function planOffload(input: OffloadPlanInput): OffloadPlan {
  for (const [k, v] of Object.entries(input)) {
    if (k !== 'name' && !(typeof v === 'number' && Number.isFinite(v) && v >= 0)) throw new RangeError(`${k} must be a finite number >= 0, got ${String(v)}`);
  }
  if (input.tokensPerSecond <= 0 || input.batchTokens <= 0 || input.pcieGBps <= 0 || input.hbmGBps <= 0) {
    throw new RangeError('tokensPerSecond, batchTokens, pcieGBps and hbmGBps must be > 0');
  }
  if (input.cacheHitRate > 1 || input.uniqueShare > 1 || input.prefetchWindow > 1) throw new RangeError('cacheHitRate, uniqueShare and prefetchWindow are shares in [0, 1]');
  const step = input.batchTokens / input.tokensPerSecond;
  const lookups = input.batchTokens * input.layers * input.rowsPerToken;
  const unique = lookups * input.uniqueShare;
  const mode = (m: 'direct' | 'cached' | 'remote'): OffloadModePlan => {
    // Direct: every unique row of the step crosses PCIe. Cached: only the misses, a
    // page per missed row (one-row pages: the row). Remote: the misses' pages come from
    // the store over the network first (plus a 32-byte header each), then as cached.
    const copiedRows = m === 'direct' ? unique : unique * (1 - input.cacheHitRate) * Math.max(1, input.cachePageRows);
    const bytesPerStep = copiedRows * input.rowBytes;
    const missedPages = m === 'remote' ? unique * (1 - input.cacheHitRate) : 0;
    const networkSeconds = m === 'remote' ? (bytesPerStep + 32 * missedPages) / (input.networkGBps * 1e9) + input.layers * input.networkRttUs * 1e-6 : 0;
    const hostGatherSeconds = (m === 'direct' ? unique : unique * (1 - input.cacheHitRate)) * input.hostRowReadNs * 1e-9;
    const pcieSeconds = bytesPerStep / (input.pcieGBps * 1e9);
    const deviceGatherSeconds = (lookups * input.rowBytes) / (input.hbmGBps * 1e9);
    const latency = input.layers * input.perStepLatencyUs * 1e-6;
    // Network, host gather, copy and latency hide behind the window; the device gather does not.
    const hidden = input.prefetchWindow * step;
    const exposedSeconds = Math.max(0, networkSeconds + hostGatherSeconds + pcieSeconds + latency - hidden) + deviceGatherSeconds;
    return {
      mode: m,
      bytesPerToken: bytesPerStep / input.batchTokens,
      networkSeconds,
      hostGatherSeconds,
      pcieSeconds,
      deviceGatherSeconds,
      stepSeconds: step,
      exposedSeconds,
      overhead: exposedSeconds / (step + exposedSeconds),
    };
  };
  return { input, modes: [mode('direct'), mode('cached'), mode('remote')] };
}

export function formatPlan(plan: OffloadPlan): string {
  const i = plan.input;
  const lines = [
    `${i.name}: ${i.layers} Engram layer(s) x ${i.rowsPerToken} rows x ${i.rowBytes} B = ${(i.layers * i.rowsPerToken * i.rowBytes).toLocaleString()} B looked up per token; tables ${(i.tableBytes / 2 ** 30).toFixed(1)} GiB in host memory`,
    `GPU: PCIe ${i.pcieGBps} GB/s, HBM ${i.hbmGBps} GB/s; model ${i.tokensPerSecond.toLocaleString()} tokens/s in steps of ${i.batchTokens} tokens (${((i.batchTokens / i.tokensPerSecond) * 1e3).toFixed(2)} ms), prefetch window ${(100 * i.prefetchWindow).toFixed(1)}% of a step`,
    `calibration: unique share ${(100 * i.uniqueShare).toFixed(0)}%, cache hit rate ${(100 * i.cacheHitRate).toFixed(0)}% (pages of ${i.cachePageRows} row(s)), host row read ${i.hostRowReadNs} ns, ${i.perStepLatencyUs} µs per layer per step`,
    `remote tier: network ${i.networkGBps} GB/s, round trip ${i.networkRttUs} µs per layer per step (cache as above; the store holds the tables)`,
    '',
    '| mode | bytes/token over PCIe (remote: also over the network) | network µs/step | host gather µs/step | PCIe µs/step | device gather µs/step | exposed µs/step | throughput lost |',
    '| --- | --- | --- | --- | --- | --- | --- | --- |',
    ...plan.modes.map((m) =>
      `| ${m.mode} | ${Math.round(m.bytesPerToken).toLocaleString()} | ${(m.networkSeconds * 1e6).toFixed(1)} | ${(m.hostGatherSeconds * 1e6).toFixed(1)} | ${(m.pcieSeconds * 1e6).toFixed(1)} | ${(m.deviceGatherSeconds * 1e6).toFixed(1)} | ${(m.exposedSeconds * 1e6).toFixed(1)} | ${(100 * m.overhead).toFixed(2)}% |`),
  ];
  return lines.join('\n') + '\n';
}
