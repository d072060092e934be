"""Peak memory of calibrated compression is independent of depth.

Builds two random Llama-style models of the same width with 8 and 32 decoder
blocks, compresses each with the calibrated (default) method in a fresh child
process, and prints each child's peak resident memory (ru_maxrss) and their
ratio. Target: ratio <= 1.25 (memory is one block + calibration activations +
embeddings, not the model).

    .venv/bin/python bench/compress_memory.py [--hidden 512] [--samples 16] [--seq-len 128]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def make_model(path: Path, layers: int, hidden: int, vocab: int = 4096) -> None:
    import torch
    import transformers

    config = transformers.LlamaConfig(
        vocab_size=vocab, hidden_size=hidden, intermediate_size=int(hidden * 2.6875), num_hidden_layers=layers,
        num_attention_heads=hidden // 64, num_key_value_heads=max(1, hidden // 256), max_position_embeddings=1024,
        tie_word_embeddings=True,
    )  # fmt: skip
    torch.manual_seed(0)
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model = model.to_empty(device="cpu")
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.05) if p.ndim >= 2 else p.fill_(1.0)
    model.save_pretrained(str(path))


def child(args: argparse.Namespace) -> None:
    from uc_attest._internal.compress.options import CompressOptions
    from uc_attest._internal.compress.pipeline import compress_model

    start = time.perf_counter()
    opts = CompressOptions(samples=args.samples, seq_len=args.seq_len)
    compress_model(Path(args.model), Path(args.out), opts, progress=False)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"peak_mib": round(peak_kib / 1024, 1), "seconds": round(time.perf_counter() - start, 1)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    rows = []
    with tempfile.TemporaryDirectory(prefix="uc-mem-") as tmp:
        for layers in (8, 32):
            model = Path(tmp) / f"m{layers}"
            make_model(model, layers, args.hidden)
            size = sum(p.stat().st_size for p in model.glob("*.safetensors"))
            cmd = [sys.executable, __file__, "--child", "--model", str(model), "--out", str(Path(tmp) / f"p{layers}"),
                   "--samples", str(args.samples), "--seq-len", str(args.seq_len)]  # fmt: skip
            result = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT)
            stats = json.loads(result.stdout.strip().splitlines()[-1])
            rows.append((layers, size / 2**20, stats["peak_mib"], stats["seconds"]))
            print(f"{layers:3d} blocks  checkpoint {size / 2**20:8.1f} MiB  peak RSS {stats['peak_mib']:8.1f} MiB  "
                  f"{stats['seconds']:7.1f} s", flush=True)  # fmt: skip
    ratio = rows[1][2] / rows[0][2]
    print(f"peak ratio 32/8 blocks: {ratio:.3f} (target <= 1.25; checkpoint ratio {rows[1][1] / rows[0][1]:.2f})")


if __name__ == "__main__":
    main()
