// Run by 50.pager.test.ts with --expose-gc: a ticket dropped without release() gives its
// pages back once collected. Prints the tickets in flight before and after.
import { EngramTable, TablePager } from '../../src/index.js';

const gc = (globalThis as { gc?: () => void }).gc!;
const pager = TablePager.create(EngramTable.random(1000, 64, 'f32', { seed: 1 }), { cacheBytes: 2 ** 20, pageRows: 10 });
(() => {
  pager.prefetch(Int32Array.of(1, 200, 999)); // dropped on the floor
})();
const before = pager.stats().ticketsInFlight;
for (let i = 0; i < 20 && pager.stats().ticketsInFlight > 0; i++) {
  gc();
  await new Promise((resolve) => setTimeout(resolve, 10));
}
console.log(JSON.stringify({ before, after: pager.stats().ticketsInFlight }));
