#!/usr/bin/env python3
"""The numpy peer of `npm run bench:hash` (run by bench/hash.ts when python3 has numpy).

The reference's hashing (engram_demo_v1.py's NgramHashMapping), written the way that file
writes it: compress the ids through the lookup, build each shift of the sequence with the
compressed pad id before its start, mix each n-gram in int64 (products wrapping, XOR) and
take it modulo every head's prime, for every layer. The input file (JSON) holds the hash
spec, the compression lookup and the token ids; `expected` names a raw int32 file of the
per-head ids the library's `hash()` returned (layers in order), which must match exactly.
Prints one JSON line: the median time of `runs` runs and the tokens per second.
"""
import json
import sys
import time

import numpy as np


def hash_layer(x, multipliers, primes, pad, max_ngram):
    B, T = x.shape
    shifts = [x]
    for k in range(1, max_ngram):
        shifted = np.full_like(x, pad)
        shifted[:, k:] = x[:, : T - k]
        shifts.append(shifted)
    heads = []
    for n in range(2, max_ngram + 1):
        mix = shifts[0] * multipliers[0]
        for k in range(1, n):
            mix = np.bitwise_xor(mix, shifts[k] * multipliers[k])
        for p in primes[n - 2]:
            heads.append(mix % p)
    return np.stack(heads, axis=2)


def main():
    with open(sys.argv[1]) as f:
        job = json.load(f)
    spec = job["spec"]
    lookup = np.asarray(job["lookup"], dtype=np.int64)
    ids = np.asarray(job["ids"], dtype=np.int64).reshape(job["batch"], job["seqLen"])
    pad = spec["compressedPadId"]
    max_ngram = spec["config"]["maxNgramSize"]
    layers = [(np.asarray([int(m) for m in l["multipliers"]], dtype=np.int64), l["primes"]) for l in spec["layers"]]

    def run():
        x = lookup[ids]
        return [hash_layer(x, m, p, pad, max_ngram) for m, p in layers]

    out = run()
    expected = np.fromfile(job["expected"], dtype=np.int32)
    got = np.concatenate([o.reshape(-1) for o in out]).astype(np.int64)
    if got.shape != expected.shape or not np.array_equal(got, expected.astype(np.int64)):
        print(json.dumps({"match": False}))
        sys.exit(1)
    times = []
    for _ in range(job["runs"]):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    times.sort()
    median = times[len(times) // 2]
    print(json.dumps({"match": True, "numpy": np.__version__, "medianSeconds": median, "tokensPerSecond": ids.size / median, "samples": times}))


if __name__ == "__main__":
    main()
