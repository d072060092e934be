"""Where does a pack's perplexity loss sit? Restore one tensor family at a time and re-measure.

Loads a pack into the model, then for each family of block linear maps (q_proj,
k_proj, ...) puts the original weights back, measures perplexity on windows of
the CALIBRATION text's second half (never the evaluation text: this informs
choices such as the demo's --bits-for mix, which the evaluation then judges) and
reports which share of the pack's loss that family carries ("gain").

    .venv/bin/python bench/sensitivity.py [--pack build/demo-uniform/smollm2-135m.ucpack] [--windows 20]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from uc_attest._internal.evaluate.loading import load_model_dir, load_pack_model  # noqa: E402
from uc_attest._internal.evaluate.perplexity import evaluate_tokens  # noqa: E402
from uc_attest._internal.evaluate.text import default_calibration_text  # noqa: E402
from uc_attest._internal.evaluate.tokens import tokenize_text  # noqa: E402
from uc_attest._internal.evaluate.settings import EvalSettings  # noqa: E402

FAMILIES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "build" / "models" / "smollm2-135m")
    parser.add_argument("--pack", type=Path, required=True)
    parser.add_argument("--windows", type=int, default=20)
    args = parser.parse_args()
    ids = tokenize_text(args.model, default_calibration_text())
    ids = ids[ids.numel() // 2 :]

    def ppl(model: torch.nn.Module) -> float:
        return evaluate_tokens(model, ids, EvalSettings(seq_len=512, max_windows=args.windows, progress=False)).perplexity

    original = load_model_dir(args.model).state_dict()
    packed = load_pack_model(args.pack)
    coded = {k: v.clone() for k, v in packed.state_dict().items()}
    base, ours = ppl(load_model_dir(args.model)), ppl(packed)
    print(f"original {base:.4f}  pack {ours:.4f} (ratio {ours / base:.4f})")
    print("| family | weights | perplexity restored | share of the loss |\n| --- | ---: | ---: | ---: |")
    for family in FAMILIES:
        count = 0
        with torch.no_grad():
            for key, value in packed.state_dict().items():
                if f".{family}." in key and key.endswith("weight"):
                    value.copy_(original[key])
                    count += value.numel()
        restored = ppl(packed)
        print(f"| {family} | {count:,} | {restored:.4f} | {(ours - restored) / (ours - base):.3f} |", flush=True)
        with torch.no_grad():
            for key, value in packed.state_dict().items():
                value.copy_(coded[key])


if __name__ == "__main__":
    main()
