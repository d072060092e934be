"""Streaming evaluation against the whole-model forward on a real pack: NLL per window, bit for bit.

    nice .venv/bin/python bench/streaming_equality.py PACK [--baseline MODEL_DIR] [--windows 40] [--seq-len 512]

Verifies PACK once, tokenises the built-in evaluation text with the pack's
tokenizer (as ``attest sign`` does), and measures the pack both ways on the
same device (CPU) and dtype (float32); with ``--baseline`` the uncompressed
model directory too (block by block from safetensors, and whole). Prints the
perplexities, the wall time of each path, the comparison of every
window's NLL (float.hex), and exits 1 when any window differs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pack")
    parser.add_argument("--baseline")
    parser.add_argument("--windows", type=int, default=40)
    parser.add_argument("--seq-len", type=int, default=512)
    args = parser.parse_args()

    from uc_attest._internal.evaluate.measure import measure_model_dir, measure_pack
    from uc_attest._internal.evaluate.settings import EvalSettings
    from uc_attest._internal.evaluate.text import default_eval_text
    from uc_attest._internal.evaluate.tokens import tokenize_text
    from uc_attest._internal.pack.verify import verify_pack

    verified = verify_pack(args.pack, progress=False, architecture=True)
    if not verified.report.ok:
        sys.exit(f"the pack does not verify: {verified.report.failure_summary()}")
    ids = tokenize_text(Path(args.pack), default_eval_text())

    def settings(streaming: bool) -> EvalSettings:
        return EvalSettings(seq_len=args.seq_len, max_windows=args.windows, streaming=streaming, progress=False)

    runs = {"pack": lambda streaming: measure_pack(verified, ids, settings(streaming)).result}
    if args.baseline:
        runs["baseline"] = lambda streaming: measure_model_dir(args.baseline, ids, settings(streaming)).result
    differing = 0
    for name, run in runs.items():
        whole, streamed = run(False), run(True)
        same = [a == b for a, b in zip(whole.window_nll_hex, streamed.window_nll_hex, strict=True)]
        differing += same.count(False)
        print(f"{name}: whole-model perplexity {whole.perplexity!r} ({whole.perplexity_hex}) in {whole.seconds:.1f} s; "
              f"streaming {streamed.perplexity!r} ({streamed.perplexity_hex}) in {streamed.seconds:.1f} s; "
              f"{sum(same)}/{len(same)} windows bit-identical")  # fmt: skip
    sys.exit(1 if differing else 0)


if __name__ == "__main__":
    main()
