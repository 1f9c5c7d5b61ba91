// Hashing: the compressed-token N-gram row ids. The typed surface of native/binding/hash.cpp (see native/binding/registry.hpp).
/** Arguments of one hashing call; every array is already checked by the TS layer. */
export interface NativeHashArgs {
  batch: number;
  seqLen: number;
  layers: number;
  maxNgram: number;
  headsPerNgram: number;
  padId: number;
  compressedVocabSize: number;
  ids: Int32Array;
  mask?: Uint8Array;
  history?: Int32Array;
  lookup: Int32Array;
  multipliers: BigInt64Array;
  primes: BigUint64Array;
  offsets?: BigInt64Array;
  out: Int32Array | BigInt64Array;
  historyOut?: Int32Array;
  device: 'cpu' | 'cuda';
  deviceIndex: number;
  threads: number;
  /** CPU loop build: 'auto' (default), 'baseline', 'avx2' or 'avx512'. */
  cpuKernel?: string;
}

export interface NativeHashFunctions {
  ngramHashes(args: NativeHashArgs): void;
  ngramHashesAsync(args: NativeHashArgs): Promise<void>;
}
