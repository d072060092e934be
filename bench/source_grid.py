"""Which peers reproduce SmolLM2's source grid? Relative weight error per quantizer type.

The demo model's weights were dequantised from a Q4_1 GGUF: every block of 32
weights holds at most 16 values of an affine grid. A quantizer whose format can
express that grid (Q4_1, Q5_1: 32-weight blocks with a scale and a minimum) and
whose search finds it (llama.cpp's importance-weighted search does) rebuilds the
weights almost exactly, so its perplexity says nothing about quantization
quality. This prints sum((q - w)^2) / sum(w^2) over the block linear maps of
the first ``--layers`` layers for llama.cpp's types (uniform importance) and for
the uc_attest pack given, so the table's rows can be read for what they are.

    .venv/bin/python bench/source_grid.py [--pack build/demo/smollm2-135m.ucpack] [--layers 2]
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from quality import DEFAULT_MODEL, linear_weights  # noqa: E402
from uc_attest._internal.evaluate.loading import load_model_dir, load_pack_model  # noqa: E402


def _llamacpp() -> object:
    spec = importlib.util.spec_from_file_location("llamacpp_peer", ROOT / "bench" / "llamacpp_peer.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pack", type=Path, default=ROOT / "build" / "demo" / "smollm2-135m.ucpack")
    parser.add_argument("--layers", type=int, default=2)
    args = parser.parse_args()
    lp = _llamacpp()
    reason = lp.unavailable()  # type: ignore[attr-defined]
    model = load_model_dir(DEFAULT_MODEL)
    ours = dict(load_pack_model(args.pack).named_parameters())
    maps = [(n, w.detach().float()) for n, w in linear_weights(model) if lp.layer_index(n) < args.layers]  # type: ignore[attr-defined]
    kinds = [] if reason else ["Q4_1", "Q5_1", "Q5_0", "Q4_K", "Q5_K", "IQ4_NL"]
    err = {k: 0.0 for k in [*kinds, "uc_attest pack"]}
    norm = 0.0
    for name, w in maps:
        norm += float((w**2).sum())
        err["uc_attest pack"] += float(((ours[name + ".weight"].detach().float() - w) ** 2).sum())
        for kind in kinds:
            if kind.endswith("_K") and w.shape[1] % 256:
                continue
            q, _ = lp.quantize_dequantize(w, kind, torch.ones(w.shape[1]))  # type: ignore[attr-defined]
            err[kind] += float(((q - w) ** 2).sum())
    k_norm = sum(float((w**2).sum()) for _, w in maps if w.shape[1] % 256 == 0)
    print(f"relative weight error over the block linear maps of layers 0..{args.layers - 1}"
          + (f" (llama.cpp not available: {reason})" if reason else ""))  # fmt: skip
    for kind, e in err.items():
        denom = k_norm if kind.endswith("_K") else norm
        scope = " (only maps whose rows are multiples of 256)" if kind.endswith("_K") else ""
        print(f"  {kind:<16} {e / denom:.2e}{scope}")


if __name__ == "__main__":
    main()
