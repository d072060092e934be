"""llm-compressor GPTQ as a peer of the quality benchmark, in its own virtual environment.

llm-compressor pins a transformers release of its own, so it does not go into the
project's .venv. Two steps, rerunnable on a fresh machine:

    python3 bench/llmcompressor_peer.py setup          # build/venv-llmc: torch==2.13.0 (CPU wheel) first, then llmcompressor
    build/venv-llmc/bin/python bench/llmcompressor_peer.py run --bits 5
    build/venv-llmc/bin/python bench/llmcompressor_peer.py run --bits 4

``run`` loads build/models/smollm2-135m in its stored dtype (bf16, what llm-compressor
uses on CPU with dtype="auto"), calibrates on the project's calibration text
(uc_attest._internal.evaluate.text.default_calibration_text: 128 windows x 512 tokens evenly
spaced, the same windows as uc_attest's calibrated coder; never the evaluation
text), and runs ``oneshot`` with one GPTQModifier: every Linear except lm_head,
int weights, symmetric, group strategy, group size 64, actorder="weight"
(static activation ordering, the only act-order mode this llm-compressor's GPTQ
accepts), sequential pipeline. It then writes the dequantised weights
(float32 scale * q, the scale as stored) of each quantised Linear to
build/llmc/gptq-w{bits}g64.safetensors, keyed by module name, and a JSON with the
wall time, bits per weight, versions and recipe. bench/quality.py loads those
weights into the baseline model and evaluates them like every other peer.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / "build" / "venv-llmc"
OUT = ROOT / "build" / "llmc"
MODEL = ROOT / "build" / "models" / "smollm2-135m"
TORCH = "torch==2.13.0"  # the local CPU wheel; never let pip resolve another torch (a multi-GB CUDA build)
LLMCOMPRESSOR = "llmcompressor==0.14.0.1"  # accepts torch 2.13; pins transformers<=5.17
GROUP = 64


def weights_path(bits: int) -> Path:
    return OUT / f"gptq-w{bits}g{GROUP}.safetensors"


def info_path(bits: int) -> Path:
    return OUT / f"gptq-w{bits}g{GROUP}.json"


def label(bits: int) -> str:
    return f"llm-compressor GPTQ int{bits} g{GROUP} act-order"


class Missing(Exception):
    """The peer's output for this bit width is absent (or made for another model)."""


def apply(model_dir: Path, weights: list[tuple[str, Any]], bits: int) -> dict[str, Any]:
    """Copy the saved dequantised weights into ``weights`` ((module name, parameter) of the baseline
    model, as bench/quality.py's linear_weights lists them); returns the run's JSON. Runs in the main venv."""
    import torch
    from safetensors.torch import load_file

    sys.path.insert(0, str(ROOT))
    from uc_attest._internal.evaluate.text import default_calibration_text

    path, meta = weights_path(bits), info_path(bits)
    if not path.is_file() or not meta.is_file():
        raise Missing(f"run bench/llmcompressor_peer.py first (no {path.relative_to(ROOT)} / {meta.name})")
    info = json.loads(meta.read_text())
    if info.get("model") != model_dir.name:
        raise Missing(f"{meta.name} was made for {info.get('model')}, not {model_dir.name}")
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != info["weights_sha256"]:
        raise ValueError(f"{path} does not match the SHA-256 recorded in {meta.name}")
    if info["calibration_sha256"] != hashlib.sha256(default_calibration_text().encode("utf-8")).hexdigest():
        raise ValueError(f"{meta.name}: calibrated on a text other than this machine's default calibration text")
    tensors = load_file(str(path))
    names = {name for name, _ in weights}
    if set(tensors) != names:
        missing, extra = sorted(names - set(tensors)), sorted(set(tensors) - names)
        raise ValueError(f"{path.name}: module names differ from the model's linear maps (missing {missing[:3]}, extra {extra[:3]})")
    with torch.no_grad():
        for name, w in weights:
            if tuple(tensors[name].shape) != tuple(w.shape):
                raise ValueError(f"{path.name}: {name} has shape {tuple(tensors[name].shape)}, the model {tuple(w.shape)}")
            w.copy_(tensors[name].to(w.dtype))
    return info


def setup() -> None:
    """Create build/venv-llmc with the pinned CPU torch, then llmcompressor constrained to that torch."""
    python = VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, TORCH], check=True)
    VENV.mkdir(parents=True, exist_ok=True)
    constraints = VENV / "constraints.txt"
    constraints.write_text(TORCH + "\n")
    subprocess.run([*pip, "-c", str(constraints), LLMCOMPRESSOR], check=True)
    print(f"ready: {python} {Path(__file__).relative_to(ROOT)} run --bits 5", flush=True)


def calibration_windows(samples: int, seq_len: int) -> tuple[list[list[int]], dict[str, object]]:
    """``samples`` windows of ``seq_len`` ids evenly spaced over the project's calibration text."""
    sys.path.insert(0, str(ROOT))
    from transformers import AutoTokenizer

    from uc_attest._internal.evaluate.text import default_calibration_text

    text = default_calibration_text()
    tokenizer = AutoTokenizer.from_pretrained(str(MODEL))
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    available = len(ids) // seq_len
    n = min(samples, available)
    windows = [ids[s : s + seq_len] for s in ((j * available // n) * seq_len for j in range(n))]
    info = {
        "calibration_source": "uc_attest default_calibration_text (python-stdlib-docstrings, calibration split)",
        "calibration_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
        "samples": n,
        "seq_len": seq_len,
        "calibration_tokens": n * seq_len,
    }
    return windows, info


def run(bits: int, samples: int, seq_len: int, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import compressed_tensors
    import transformers
    from datasets import Dataset
    from llmcompressor import __version__ as llmc_version
    from llmcompressor import oneshot
    from llmcompressor.modifiers.quantization import GPTQModifier
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    windows, calib = calibration_windows(samples, seq_len)
    dataset = Dataset.from_dict({"input_ids": windows, "attention_mask": [[1] * len(w) for w in windows]})
    weights = {"num_bits": bits, "type": "int", "symmetric": True, "strategy": "group", "group_size": GROUP}
    recipe_args = {"block_size": 128, "dampening_frac": 0.01, "actorder": "weight"}
    recipe = GPTQModifier(
        config_groups={"group_0": {"targets": ["Linear"], "weights": dict(weights)}},
        ignore=["lm_head"],
        **recipe_args,
    )

    start = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(str(MODEL), dtype="auto")
    tokenizer = AutoTokenizer.from_pretrained(str(MODEL))
    oneshot(
        model=model,
        tokenizer=tokenizer,
        dataset=dataset,
        recipe=recipe,
        pipeline="sequential",
        num_calibration_samples=len(windows),
        max_seq_length=seq_len,
    )
    seconds = time.perf_counter() - start
    print(f"oneshot done in {seconds:.1f} s", flush=True)

    qmax = (1 << (bits - 1)) - 1
    tensors: dict[str, torch.Tensor] = {}
    worst_grid = 0.0  # how far the model's weights lie from scale * integer (0 when on the grid)
    worst_diff = 0.0  # float32 dequantisation vs the model's own (dtype-rounded) fake-quantised weight
    scale_dtype = None
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear) or not hasattr(module, "weight_scale"):
            continue
        w = module.weight.detach().to(torch.float32)
        rows, cols = w.shape
        scale = module.weight_scale.detach()
        scale_dtype = str(scale.dtype)
        s = scale.to(torch.float32).reshape(rows, -1)
        if s.shape[1] * GROUP != cols:
            raise SystemExit(f"{name}: {s.shape[1]} scales for {cols} columns at group {GROUP}")
        zero = getattr(module, "weight_zero_point", None)
        if zero is not None and bool(torch.any(zero != 0)):
            raise SystemExit(f"{name}: non-zero zero points in a symmetric scheme")
        g_idx = getattr(module, "weight_g_idx", None)
        if g_idx is not None and not torch.equal(g_idx.to(torch.int64).cpu(), torch.arange(cols) // GROUP):
            raise SystemExit(f"{name}: group index is not contiguous")
        wg = w.reshape(rows, -1, GROUP)
        sg = torch.where(s > 0, s, 1).unsqueeze(-1)
        ratio = wg / sg
        q = torch.round(ratio).clamp(-qmax - 1, qmax)
        worst_grid = max(worst_grid, float((ratio - q).abs().max()))
        deq = (q * s.unsqueeze(-1)).reshape(rows, cols)
        worst_diff = max(worst_diff, float((deq - w).abs().max()))
        tensors[name] = deq.contiguous()
    if worst_grid > 0.1:
        raise SystemExit(f"weights are not on the scale * integer grid (worst {worst_grid:.3f} of a step)")

    OUT.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(weights_path(bits)), metadata={"peer": "llm-compressor GPTQ", "bits": str(bits), "group": str(GROUP)})
    count = sum(t.numel() for t in tensors.values())
    info = {
        "method": label(bits),
        "model": MODEL.name,
        "bits": bits,
        "group_size": GROUP,
        "bpw": bits + 16 / GROUP,  # int code + one 16-bit scale per group; symmetric, so no zero points
        "seconds": round(seconds, 1),
        "seconds_note": "model load + oneshot (calibration, sequential GPTQ), wall clock",
        "threads": threads,
        "modules": len(tensors),
        "weights": count,
        "scale_dtype": scale_dtype,
        "model_dtype": str(next(model.parameters()).dtype),
        "grid_max_offset": worst_grid,
        "dequant_max_abs_diff_vs_model": worst_diff,
        "recipe": {"GPTQModifier": {**recipe_args, "targets": ["Linear"], "ignore": ["lm_head"], "weights": weights}},
        "pipeline": "sequential",
        **calib,
        "versions": {
            "llmcompressor": llmc_version,
            "compressed_tensors": compressed_tensors.__version__,
            "transformers": transformers.__version__,
            "torch": torch.__version__,
        },
        "weights_file": weights_path(bits).name,
        "weights_sha256": hashlib.sha256(weights_path(bits).read_bytes()).hexdigest(),
    }
    info_path(bits).write_text(json.dumps(info, indent=1) + "\n")
    print(json.dumps(info, indent=1), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("setup", help="create build/venv-llmc (pinned CPU torch, then llmcompressor)")
    r = sub.add_parser("run", help="GPTQ one bit width (run with build/venv-llmc/bin/python)")
    r.add_argument("--bits", type=int, choices=(4, 5), required=True)
    r.add_argument("--samples", type=int, default=128)
    r.add_argument("--seq-len", type=int, default=512)
    r.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    if args.cmd == "setup":
        setup()
    else:
        run(args.bits, args.samples, args.seq_len, args.threads)


if __name__ == "__main__":
    main()
