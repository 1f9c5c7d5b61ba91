// Checkpoints stripped of their Engram tables (`engram store strip`): the same files with
// the table bytes left as holes, for serving hosts whose tables come from the remote tier.
// A record beside the files names each stripped table's identity, so that the remote
// tier can check the store without the rows (identity's sample hash needs them), and so
// that no other tier ever reads the holes' zeros as rows.
import fs from 'node:fs';
import path from 'node:path';

import { safetensorsHeaderSha256, type TableIdentity } from './identity.js';

/** The record's name in a stripped checkpoint directory. */
export const STRIPPED_RECORD = 'engram-stripped.json';
/** The record beside a stripped single safetensors file: `<file>` + this. */
export const STRIPPED_RECORD_SUFFIX = '.engram-stripped.json';

export interface StrippedRecord {
  format: 'engram-kernels stripped checkpoint';
  version: 1;
  /** One per table whose rows were left out. */
  tables: TableIdentity[];
}

/** Where a record for a table stored in `file` would be. */
function recordPaths(file: string): string[] {
  return [path.join(path.dirname(file), STRIPPED_RECORD), file + STRIPPED_RECORD_SUFFIX];
}

function readRecord(at: string): StrippedRecord {
  let parsed: unknown;
  try {
    parsed = JSON.parse(fs.readFileSync(at, 'utf8'));
  } catch (e) {
    throw new Error(`'${at}' (a stripped checkpoint's record) is not readable JSON: ${(e as Error).message}`);
  }
  const r = parsed as StrippedRecord;
  if (r?.format !== 'engram-kernels stripped checkpoint' || r.version !== 1 || !Array.isArray(r.tables)) {
    throw new Error(`'${at}' is not an engram-kernels stripped-checkpoint record of version 1`);
  }
  return r;
}

/**
 * The recorded identity of `tensor`, stored in `paths` (row order), when its checkpoint
 * was stripped; undefined for a whole checkpoint. A record whose headers do not match the
 * files (files replaced since) is an error, never a reason to read the holes.
 */
export function strippedTableIdentity(tensor: string, paths: readonly string[]): TableIdentity | undefined {
  for (const at of recordPaths(paths[0])) {
    if (!fs.existsSync(at)) continue;
    const recorded = readRecord(at).tables.find((t) => t.tensor === tensor);
    if (recorded === undefined) continue;
    const distinct = paths.filter((p, i) => paths.indexOf(p) === i);
    const headers = distinct.map(safetensorsHeaderSha256);
    if (headers.join() !== recorded.headerSha256.join()) {
      throw new Error(`'${at}' records '${tensor}' as stripped from files whose headers differ from ${distinct.map((p) => `'${p}'`).join(', ')}: the record and the files do not belong together`);
    }
    return recorded;
  }
  return undefined;
}

/** The error for a stripped table read by any tier but 'remote'. */
export function strippedTableError(tensor: string, file: string): Error {
  return new Error(
    `'${file}' holds no rows of '${tensor}': its checkpoint was stripped of its Engram tables (engram store strip), whose pages live in the remote tier's store. ` +
      "Load it with table: { tier: 'remote', url }, or load the whole checkpoint.",
  );
}
