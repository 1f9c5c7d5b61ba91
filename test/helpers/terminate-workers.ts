// Run by 17.worker-terminate.test.ts in its own process: worker threads that run async
// native work are terminated at staggered moments (while the addon loads, just after
// work starts, mid-work). The process must survive every round and say so.
import { Worker } from 'node:worker_threads';

const job = new URL('./terminate-job.ts', import.meta.url).href;
// Worker threads do not inherit tsx's loader: each registers it before importing the job.
const tsxApi = import.meta.resolve('tsx/esm/api');
const bootstrap = new URL(`data:text/javascript,${encodeURIComponent(`import { register } from ${JSON.stringify(tsxApi)}; register(); await import(${JSON.stringify(job)});`)}`);
const kinds = process.argv.slice(2);
let rounds = 0;
for (const kind of kinds) {
  for (let round = 0; round < 8; round++) {
    const worker = new Worker(bootstrap, { workerData: { kind } });
    worker.on('error', (e) => {
      console.error(`worker ${kind} failed: ${e instanceof Error ? e.stack : e}`);
      process.exit(2);
    });
    // Round 0 terminates without waiting (the addon may be loading); the others once work has started.
    if (round > 0) await new Promise((resolve) => worker.once('message', resolve));
    await new Promise((resolve) => setTimeout(resolve, (round * 7) % 23));
    await worker.terminate();
    rounds++;
  }
}
console.log(JSON.stringify({ kinds, rounds, survived: true }));
