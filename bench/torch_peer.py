#!/usr/bin/env python3
"""The PyTorch peer of bench/gpu.ts, run on the same GPU in the same benchmark run.

Usage: torch_peer.py WORK.json RESULT.json

WORK.json names GEMM shapes (m, k, n) and gathers (a table of `rows` rows of `rowBytes`
bytes, `count` rows read by random index). Each GEMM is timed as bf16 torch.matmul
(cuBLAS), each gather as index_select on a uint8 table of that geometry, with CUDA events,
median of several runs after a warm-up. The device-to-device and pinned host<->device copy
rates are measured beside them as yardsticks. Never part of the package's run or test
path: only the GPU benchmark starts it, where python3 has torch.
"""
import json
import statistics
import sys


def main() -> int:
    work_path, result_path = sys.argv[1], sys.argv[2]
    with open(work_path) as f:
        work = json.load(f)
    result = {}
    try:
        import torch
    except Exception as e:  # no torch here: say so, the benchmark goes on without the peer
        result["error"] = f"not run: python3 has no torch ({e.__class__.__name__})"
        json.dump(result, open(result_path, "w"))
        return 0
    if not torch.cuda.is_available():
        result["error"] = "not run: torch sees no CUDA device"
        json.dump(result, open(result_path, "w"))
        return 0
    dev = torch.device("cuda")
    result["torch"] = torch.__version__
    result["device"] = torch.cuda.get_device_name(0)
    runs = 3 if work.get("quick") else 10
    gen = torch.Generator(device=dev)
    gen.manual_seed(1)

    def timed(fn):
        fn()
        torch.cuda.synchronize()
        samples = []
        for _ in range(runs):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            torch.cuda.synchronize()
            samples.append(a.elapsed_time(b))
        return statistics.median(samples)

    result["gemms"] = {}
    for g in work["gemms"]:
        m, k, n = g["m"], g["k"], g["n"]
        x = torch.randn(m, k, device=dev, dtype=torch.bfloat16, generator=gen)
        w = torch.randn(k, n, device=dev, dtype=torch.bfloat16, generator=gen)
        t = timed(lambda: torch.matmul(x, w))
        result["gemms"][g["name"]] = {"ms": t, "tflops": 2.0 * m * k * n / (t * 1e-3) / 1e12}
        del x, w

    result["gathers"] = {}
    tables = {}
    for g in work["gathers"]:
        key = (g["rows"], g["rowBytes"])
        if key not in tables:
            tables.clear()
            torch.cuda.empty_cache()
            tables[key] = torch.randint(0, 255, (g["rows"], g["rowBytes"]), device=dev, dtype=torch.uint8, generator=gen)
        table = tables[key]
        idx = torch.randint(0, g["rows"], (max(1, g["count"]),), device=dev, generator=gen)
        t = timed(lambda: torch.index_select(table, 0, idx))
        result["gathers"][g["name"]] = {"ms": t, "gbps": max(1, g["count"]) * g["rowBytes"] / (t * 1e-3) / 1e9}
    tables.clear()

    size = (64 if work.get("quick") else 1024) * 2**20
    src = torch.empty(size, dtype=torch.uint8, device=dev)
    dst = torch.empty_like(src)
    host = torch.empty(size, dtype=torch.uint8, pin_memory=True)
    d2d = timed(lambda: dst.copy_(src))
    h2d = timed(lambda: dst.copy_(host, non_blocking=True))
    d2h = timed(lambda: host.copy_(src, non_blocking=True))
    # A device-to-device copy reads and writes every byte.
    result["copy"] = {"d2dGBps": 2 * size / (d2d * 1e-3) / 1e9, "h2dPinnedGBps": size / (h2d * 1e-3) / 1e9, "d2hPinnedGBps": size / (d2h * 1e-3) / 1e9}
    with open(result_path, "w") as f:
        json.dump(result, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
