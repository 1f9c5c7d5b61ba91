// Real Redis servers for the remote tier's tests: a cluster of 3 masters + 3 replicas (or
// one server) from Debian's redis-server on loopback ports, in a scratch directory, torn
// down after. Optionally with a password (AUTH and the replicas' masterauth) or TLS
// (certificates from a CA made here with openssl).
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export interface TlsFiles {
  dir: string;
  ca: string;
  cert: string;
  key: string;
}

/** A CA and a server certificate for 127.0.0.1, made now (self-signed CA, 1 day). */
export function makeTlsFiles(): TlsFiles {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'engram-redis-tls-'));
  const run = (args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  run(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=engram-test-ca', '-keyout', 'ca.key', '-out', 'ca.crt']);
  run(['req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=127.0.0.1', '-keyout', 'server.key', '-out', 'server.csr']);
  fs.writeFileSync(path.join(dir, 'ext.cnf'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  run(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '1', '-out', 'server.crt', '-extfile', 'ext.cnf']);
  return { dir, ca: path.join(dir, 'ca.crt'), cert: path.join(dir, 'server.crt'), key: path.join(dir, 'server.key') };
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

export interface RedisSetup {
  ports: number[];
  /** The seed URL (first node). */
  url: string;
  dir: string;
  /** Kills node `port` (SIGKILL). */
  kill(port: number): void;
  /** Kills every node (the cluster is gone). */
  killAll(): void;
  /** Starts node `port` again with its old config and data (it rejoins the cluster). */
  restart(port: number): Promise<void>;
  /** The port of a master's replica. */
  replicaOf(port: number): number;
  /** Waits until every running node reports cluster_state:ok. */
  waitHealthy(): Promise<void>;
  /** redis-cli against node `port`, returning stdout. */
  cli(port: number, ...args: string[]): string;
  /** redis-cli in cluster mode (follows redirections) through node `port`. */
  cliCluster(port: number, ...args: string[]): string;
  stop(): Promise<void>;
}

export const redisAvailable = () => spawnSync('redis-server', ['--version'], { stdio: 'ignore' }).status === 0;

export async function startRedis(options: { cluster?: boolean; password?: string; tls?: TlsFiles; persist?: boolean } = {}): Promise<RedisSetup> {
  const cluster = options.cluster !== false;
  const count = cluster ? 6 : 1;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'engram-redis-'));
  const ports: number[] = [];
  for (let i = 0; i < count; i++) ports.push(await freePort());
  const procs = new Map<number, ChildProcess>();
  const args = (port: number) => {
    // Append-only with fsync per write: a node killed and started again comes back with its keys.
    // (persist: false, for benchmarks: memory only, so pushes run at memory speed.)
    const persist = options.persist === false ? ['--appendonly', 'no'] : ['--appendonly', 'yes', '--appendfsync', 'always'];
    const a = ['--bind', '127.0.0.1', '--dir', path.join(dir, String(port)), '--save', '', ...persist, '--protected-mode', 'no', '--loglevel', 'warning'];
    if (options.tls) {
      a.push('--port', '0', '--tls-port', String(port), '--tls-cert-file', options.tls.cert, '--tls-key-file', options.tls.key, '--tls-ca-cert-file', options.tls.ca, '--tls-auth-clients', 'no');
      if (cluster) a.push('--tls-cluster', 'yes', '--tls-replication', 'yes');
    } else {
      a.push('--port', String(port));
    }
    if (cluster) a.push('--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-node-timeout', '1000', '--cluster-replica-validity-factor', '0');
    if (options.password) a.push('--requirepass', options.password, '--masterauth', options.password);
    return a;
  };
  const cliArgs = (port: number) => [
    '-h', '127.0.0.1', '-p', String(port),
    ...(options.password ? ['-a', options.password, '--no-auth-warning'] : []),
    ...(options.tls ? ['--tls', '--cacert', options.tls.ca] : []),
  ];
  const cli = (port: number, ...a: string[]) => execFileSync('redis-cli', [...cliArgs(port), ...a], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  const launch = async (port: number) => {
    fs.mkdirSync(path.join(dir, String(port)), { recursive: true });
    const p = spawn('redis-server', args(port), { stdio: 'ignore' });
    procs.set(port, p);
    for (let i = 0; i < 100; i++) {
      try {
        if (cli(port, 'PING').trim() === 'PONG') return;
      } catch {
        // not up yet
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`redis-server on port ${port} did not start`);
  };
  for (const port of ports) await launch(port);
  if (cluster) {
    execFileSync('redis-cli', [...cliArgs(ports[0]).slice(4), '--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '1', '--cluster-yes'], { stdio: 'pipe' });
    // Every node sees a whole cluster, every replica has synced.
    for (let i = 0; i < 200; i++) {
      const ok = ports.every((p) => /cluster_state:ok/.test(cli(p, 'CLUSTER', 'INFO')));
      const synced = ports.every((p) => !/role:slave/.test(cli(p, 'INFO', 'replication')) || /master_link_status:up/.test(cli(p, 'INFO', 'replication')));
      if (ok && synced) break;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  const scheme = options.tls ? 'rediss' : 'redis';
  return {
    ports,
    url: `${scheme}://127.0.0.1:${ports[0]}`,
    dir,
    cli,
    cliCluster: (port, ...a) => cli(port, '-c', ...a),
    kill(port) {
      procs.get(port)?.kill('SIGKILL');
      procs.delete(port);
    },
    killAll() {
      for (const p of procs.values()) p.kill('SIGKILL');
      procs.clear();
    },
    restart: launch,
    replicaOf(port) {
      const m = /slave0:ip=[^,]+,port=(\d+)/.exec(cli(port, 'INFO', 'replication'));
      if (m === null) throw new Error(`node ${port} has no replica`);
      return Number(m[1]);
    },
    async waitHealthy() {
      for (let i = 0; i < 300; i++) {
        if ([...procs.keys()].every((p) => /cluster_state:ok/.test(cli(p, 'CLUSTER', 'INFO')))) return;
        await new Promise((r) => setTimeout(r, 100));
      }
      throw new Error('the cluster did not become healthy');
    },
    async stop() {
      for (const p of procs.values()) p.kill('SIGKILL');
      procs.clear();
      await new Promise((r) => setTimeout(r, 50));
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
