// Puts garbage into the addon's output pool: an output of `bytes` filled with `byte` and
// let go, then collected and finalized (finalizers run from the event loop), so that the
// next output of that size is the same memory, still holding the garbage.
import v8 from 'node:v8';
import vm from 'node:vm';

import { native } from '../../src/native/index.js';

v8.setFlagsFromString('--expose-gc');
export const gc = vm.runInNewContext('gc') as () => void;
export const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

export async function collectAndFinalize(): Promise<void> {
  for (let i = 0; i < 3; i++) {
    gc();
    await turn();
  }
}

export async function leaveGarbageInPool(bytes: number, byte: number): Promise<void> {
  new Uint8Array(native().allocateOutput(bytes)).fill(byte);
  await collectAndFinalize();
}
