"""What the incoherence transform costs the canonical reconstruction (uc verify, export, loading): one map, both ways.

Reconstructs a SmolLM2-shaped down_proj map ([576, 1536], 5 bits, block 64)
with and without a hadamard-sign-v1 transform (size 256, as the coder picks
for width 1536) through ``canonical.reconstruct_array`` (the fused kernel where
built) and prints milliseconds per call and nanoseconds per weight. Timings are
only comparable within one run; quote the load average beside them.

    nice -n 5 .venv/bin/python bench/incoherence_cost.py [--repeat 20]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from uc_attest._internal.codec import native, pack_codes  # noqa: E402
from uc_attest._internal.codec.canonical import reconstruct_array  # noqa: E402
from uc_attest._internal.codec.params import CodecParams, HadamardTransform  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    shape = (576, 1536)
    packed = pack_codes(rng.integers(0, 32, size=shape, dtype=np.uint8), 5)
    codebook = np.sort(rng.standard_normal(32).astype(np.float32))
    scales = rng.random((576, 24)).astype(np.float16)
    print(f"kernel: {native.vector_path() if native.available() else 'numpy'}; load average {os.getloadavg()}")
    for transform in (None, HadamardTransform(size=256, seed=1)):
        params = CodecParams(bits=5, block_size=64, block_axis=1, transform=transform)
        reconstruct_array(packed, codebook, scales, shape, params)
        start = time.perf_counter()
        for _ in range(args.repeat):
            reconstruct_array(packed, codebook, scales, shape, params)
        ms = (time.perf_counter() - start) / args.repeat * 1e3
        print(f"{'hadamard-sign-v1 size 256' if transform else 'no transform':26s} {ms:8.2f} ms  {ms * 1e6 / (576 * 1536):6.1f} ns/weight")


if __name__ == "__main__":
    main()
