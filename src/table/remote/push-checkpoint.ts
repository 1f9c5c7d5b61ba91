// `engram store push`: every Engram table of a checkpoint into the remote tier's store.
// A directory is read as a DeepSeek-V4.1 checkpoint; a .safetensors file as the paper's
// layer or model (saveSafetensors' metadata says which).
import fs from 'node:fs';

import { readSafetensors } from '../../core/safetensors.js';
import { DeepseekV41EngramModel } from '../../layers/v41/model.js';
import { Engram, CONFIG_METADATA_KEY } from '../../layers/paper/layer.js';
import { EngramModel, MODEL_CONFIG_METADATA_KEY } from '../../layers/paper/model.js';
import type { EngramTable } from '../table.js';
import { remoteIdentity, type LoadedFile } from '../tiers.js';
import { pushTable, type PushOptions, type PushResult } from './push.js';
import { RemoteStore, type RemoteStoreOptions } from './store.js';

export interface LayerTable {
  layerId: number;
  table: EngramTable;
  source: LoadedFile;
}

/** The Engram tables of the checkpoint `target` (a V4.1 directory, or a paper layer or model file), with where each was read from. */
export function tablesOf(target: string): LayerTable[] {
  const stat = fs.statSync(target, { throwIfNoEntry: false });
  if (stat === undefined) throw new Error(`'${target}' does not exist`);
  const pick = (layers: Iterable<[number, { table: EngramTable; tableSource: LoadedFile | undefined }]>) =>
    [...layers].map(([layerId, l]) => {
      if (l.tableSource === undefined) throw new Error(`layer ${layerId}'s table has no source file`);
      return { layerId, table: l.table, source: l.tableSource };
    });
  if (stat.isDirectory()) return pick(DeepseekV41EngramModel.fromCheckpoint(target, { device: 'cpu' }).layers);
  const metadata = readSafetensors(target).metadata;
  if (metadata[MODEL_CONFIG_METADATA_KEY] !== undefined) return pick(EngramModel.fromSafetensors(target, { device: 'cpu' }).layers);
  if (metadata[CONFIG_METADATA_KEY] !== undefined) {
    const layer = Engram.fromSafetensors(target, { device: 'cpu' });
    return pick([[layer.config.layerId, layer]]);
  }
  throw new TypeError(`'${target}' is neither a DeepSeek-V4.1 checkpoint directory nor a safetensors file written by saveSafetensors (no ${CONFIG_METADATA_KEY} or ${MODEL_CONFIG_METADATA_KEY} metadata)`);
}

/** Pushes every table of the checkpoint `target`; returns one result per layer. */
export async function pushCheckpoint(
  target: string,
  store: RemoteStoreOptions,
  options: Omit<PushOptions, 'onProgress'> & { onProgress?: (layerId: number, done: number, total: number, phase: 'push' | 'verify') => void } = {},
): Promise<Array<PushResult & { layerId: number; tensor: string }>> {
  const tables = tablesOf(target);
  const client = await RemoteStore.connect(store);
  try {
    const out: Array<PushResult & { layerId: number; tensor: string }> = [];
    for (const t of tables) {
      const identity = remoteIdentity(t.table, t.source);
      const r = await pushTable(client, t.table, identity, { ...options, onProgress: (d, n, phase) => options.onProgress?.(t.layerId, d, n, phase) });
      out.push({ ...r, layerId: t.layerId, tensor: identity.tensor });
    }
    return out;
  } finally {
    await client.close();
  }
}
