// On-disk cache for derived data (compressed-tokenizer lookups), keyed by content hash.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** ENGRAM_CACHE_DIR, else $XDG_CACHE_HOME/engram-kernels, else ~/.cache/engram-kernels. */
export function cacheDir(): string {
  if (process.env.ENGRAM_CACHE_DIR) return process.env.ENGRAM_CACHE_DIR;
  const base = process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache');
  return path.join(base, 'engram-kernels');
}

export function readCache(name: string): Buffer | undefined {
  try {
    return fs.readFileSync(path.join(cacheDir(), name));
  } catch {
    return undefined;
  }
}

/** Writes atomically (temp file + rename); a cache that cannot be written is no error. */
export function writeCache(name: string, data: Uint8Array): void {
  const dir = cacheDir();
  const tmp = path.join(dir, `.${name}.${process.pid}.tmp`);
  try {
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(tmp, data);
    fs.renameSync(tmp, path.join(dir, name));
  } catch {
    try {
      fs.rmSync(tmp, { force: true });
    } catch {
      // nothing left to clean
    }
  }
}
