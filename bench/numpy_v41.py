"""The numpy peer for `npm run bench:v41`, which runs it: python3 bench/numpy_v41.py <ckpt>.

DeepSeek-V4.1's Engram layer as a Python user would write it with numpy: wkv dequantised
to fp32 ahead of time, rows dequantised per gather, OpenBLAS sgemm, the gate in numpy.
Prefill 1 x 1024 tokens with random row ids; prints its figures as one JSON line.
"""
import json
import os
import platform
import sys
import time

import numpy as np

ckpt = sys.argv[1] if len(sys.argv) > 1 else '.cache/bench-v41'
cfg = json.load(open(os.path.join(ckpt, 'config.json')))
cfg = cfg.get('text_config', cfg)  # the released layout nests the model's config
D, HC, HEAD = cfg['hidden_size'], cfg['hc_mult'], cfg['engram_head_dim']
COLS = (cfg['engram_max_ngram_size'] - 1) * cfg['engram_n_heads']
EPS = cfg['rms_norm_eps']
weight_map = json.load(open(os.path.join(ckpt, 'model.safetensors.index.json')))['weight_map']
prefix = 'layers.%d.engram.' % cfg['engram_layer_ids'][0]


def tensor(name):
    path = os.path.join(ckpt, weight_map[prefix + name])
    with open(path, 'rb') as f:
        n = int.from_bytes(f.read(8), 'little')
        header = json.loads(f.read(n))
    info = header[prefix + name]
    dtype = {'F8_E4M3': np.uint8, 'F8_E8M0': np.uint8, 'BF16': np.uint16}[info['dtype']]
    begin, end = info['data_offsets']
    return np.memmap(path, dtype=dtype, mode='r', offset=8 + n + begin, shape=tuple(info['shape']))


codes = np.arange(256)
exp, man = (codes >> 3) & 15, codes & 7
e4m3 = np.where(exp == 0, man * 2.0 ** -9, (1 + man / 8) * 2.0 ** (exp - 7)) * np.where(codes & 0x80, -1, 1)
e4m3 = e4m3.astype(np.float32)
ue8m0 = (2.0 ** (np.arange(256) - 127)).astype(np.float32)

embed, embed_scale = tensor('embed.weight'), tensor('embed.scale')
wkv_codes, wkv_scale = tensor('wkv.weight'), tensor('wkv.scale')
wkv = e4m3[np.asarray(wkv_codes)] * np.repeat(np.repeat(ue8m0[np.asarray(wkv_scale)], 32, 0), 32, 1)[: wkv_codes.shape[0], : wkv_codes.shape[1]]
bf = lambda t: (np.asarray(t).astype(np.uint32) << 16).view(np.float32)
qk = bf(tensor('q_weight')) * bf(tensor('k_weight'))

T = 1024
rng = np.random.default_rng(0)
row_ids = rng.integers(0, embed.shape[0], size=(T, COLS))
h = rng.standard_normal((T, HC, D)).astype(np.float32)


def layer(h, row_ids):
    rows = e4m3[embed[row_ids]] * np.repeat(ue8m0[embed_scale[row_ids]], 32, -1)  # [T, cols, head]
    kv = rows.reshape(T, -1) @ wkv.T  # [T, (hc+1) D]
    key, value = kv[:, : HC * D].reshape(T, HC, D), kv[:, HC * D:]
    dot = (h * qk * key).sum(-1) / np.sqrt((h * h).mean(-1) + EPS) / np.sqrt((key * key).mean(-1) + EPS) / np.sqrt(D)
    gate = 1 / (1 + np.exp(-np.sign(dot) * np.sqrt(np.maximum(np.abs(dot), 1e-6))))
    return h + gate[..., None] * value[:, None, :]


layer(h, row_ids)
times = []
for _ in range(5):
    t0 = time.perf_counter()
    layer(h, row_ids)
    times.append(time.perf_counter() - t0)
med = sorted(times)[len(times) // 2]
result = {'peer': 'numpy ' + np.__version__, 'tokens': T, 'median_seconds': med, 'tokens_per_second': T / med,
          'machine': platform.processor() or platform.machine(), 'cores': os.cpu_count()}
print(json.dumps(result))
