// On-disk cache for derived data (compressed-tokenizer lookups), keyed by content hash.
// A cache is an optimisation: any problem with it (a directory that cannot be made, a
// FIFO where a cache file should be, a read-only disk) means working without it, with
// one warning per process, never an error or a hang.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** ENGRAM_CACHE_DIR, else $XDG_CACHE_HOME/engram-kernels, else ~/.cache/engram-kernels. */
export function cacheDir(): string {
  if (process.env.ENGRAM_CACHE_DIR) return process.env.ENGRAM_CACHE_DIR;
  const base = process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache');
  return path.join(base, 'engram-kernels');
}

let warned = false;
function warnOnce(what: string, err: unknown): void {
  if (warned) return;
  warned = true;
  process.emitWarning(`engram-kernels works without its cache: ${what} (${err instanceof Error ? err.message : String(err)}); set ENGRAM_CACHE_DIR to a writable directory`, 'EngramCacheWarning');
}

/**
 * Makes `dir` and its missing parents one level at a time. Node's own recursive mkdir
 * spins forever under /proc (mkdir there fails with ENOENT, which it reads as "make the
 * parent first"); this fails once instead.
 */
function ensureDirectory(dir: string): void {
  const missing: string[] = [];
  for (let d = path.resolve(dir); ; d = path.dirname(d)) {
    let stat: fs.Stats | undefined;
    try {
      stat = fs.statSync(d);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    if (stat !== undefined) {
      if (!stat.isDirectory()) throw new Error(`'${d}' is not a directory`);
      break;
    }
    missing.push(d);
    if (path.dirname(d) === d) break;
  }
  for (const d of missing.reverse()) {
    try {
      fs.mkdirSync(d);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err; // another process made it first
    }
  }
}

export function readCache(name: string): Buffer | undefined {
  const file = path.join(cacheDir(), name);
  try {
    // Only a regular file is read: opening a FIFO would block.
    if (!fs.statSync(file).isFile()) {
      warnOnce(`'${file}' is not a regular file`, new Error('ignored'));
      return undefined;
    }
    return fs.readFileSync(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') warnOnce(`cannot read '${file}'`, err);
    return undefined;
  }
}

/** Writes atomically (temp file + rename); a cache that cannot be written is no error. */
export function writeCache(name: string, data: Uint8Array): void {
  const dir = cacheDir();
  const tmp = path.join(dir, `.${name}.${process.pid}.tmp`);
  try {
    ensureDirectory(dir);
    fs.writeFileSync(tmp, data, { flag: 'wx' });
    fs.renameSync(tmp, path.join(dir, name));
  } catch (err) {
    warnOnce(`cannot write '${path.join(dir, name)}'`, err);
    try {
      fs.rmSync(tmp, { force: true });
    } catch {
      // nothing left to clean
    }
  }
}
