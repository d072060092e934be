"""CPU time of the coder's scale and codebook search, old (bucketize, index_add Lloyd) against new, in one run.

Times ``gptq.search_scales`` (codebook, clip grid over 9 factors, codebook
again) and its two parts on SmolLM2-135M's real q_proj and down_proj of one
decoder block, with the Hessian diagonal of that block's inputs on a few
hundred tokens as importance (the decoder weights lie on the Q4_1 grid of
the GGUF the model comes from). The old implementation is the straightforward
reference in tests/support/reference_codebook.py (the code as it was). Prints
CPU milliseconds per call, the old/new ratio, and whether the results are
identical (scales bit for bit; codebooks to their largest difference). Timings
are only comparable within one run; quote the load average beside them.

    nice -n 5 .venv/bin/python bench/codebook_search_time.py [--model build/models/smollm2-135m] [--layer 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from support.reference_codebook import ref_best_clip, ref_learn_codebook, ref_normalised, ref_search_scales  # noqa: E402
from uc_attest._internal.compress import gptq  # noqa: E402


def cpu_ms(call: Callable[[], object], repeat: int) -> float:
    call()
    start = time.process_time()
    for _ in range(repeat):
        call()
    return (time.process_time() - start) / repeat * 1e3


def block_maps(model_dir: Path, layer: int, tokens: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """q_proj and down_proj of one block with their damped Hessian diagonals (as gptq.prepare_hessian makes them)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    ids = tokenizer((ROOT / "README.md").read_text(encoding="utf-8"), return_tensors="pt").input_ids[:, :tokens]
    block = model.model.layers[layer]
    maps = {"q_proj": block.self_attn.q_proj, "down_proj": block.mlp.down_proj}
    inputs: dict[str, torch.Tensor] = {}
    hooks = [m.register_forward_pre_hook(lambda _m, args, name=name: inputs.__setitem__(name, args[0].reshape(-1, args[0].shape[-1])))
             for name, m in maps.items()]  # fmt: skip
    with torch.no_grad():
        model(ids)
    for hook in hooks:
        hook.remove()
    out = {}
    for name, m in maps.items():
        x = inputs[name].double()
        h = (x.t() @ x).float()
        out[name] = (m.weight.detach().float().clone(), gptq.prepare_hessian(h, h.shape[0], 0.01, True).diag.clone())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "build" / "models" / "smollm2-135m")
    parser.add_argument("--layer", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=512)
    parser.add_argument("--bits", type=int, nargs="+", default=[3, 4, 5, 6, 7, 8])
    parser.add_argument("--blocks", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the clip grid runs single-threaded either way)")
    args = parser.parse_args()
    if not args.model.exists():
        from uc_attest._internal.demo_model import materialize_smollm2

        materialize_smollm2(args.model)
    torch.set_num_threads(args.threads)
    maps = block_maps(args.model, args.layer, args.tokens)
    print(f"load average before {os.getloadavg()}; torch threads {args.threads}; SmolLM2-135M (Q4_1 GGUF weights), block {args.layer}")
    print(f"{'map':10} {'bits':>4} {'block':>5} | {'search_scales old':>17} {'new':>7} {'x':>5} | {'codebook old':>12} {'new':>6} {'x':>5} |"
          f" {'clip old':>8} {'new':>6} {'x':>5} | identical")  # fmt: skip
    totals = [0.0, 0.0]
    worst = 0.0
    all_scales_same = True
    for name, (w, importance) in maps.items():
        for bits in args.bits:
            for block in args.blocks:
                dtype = torch.bfloat16
                new = gptq.search_scales(w, importance, bits, block, dtype, 0)
                old = ref_search_scales(w, importance, bits, block, dtype, 0)
                wb = gptq._blocked(w, block).contiguous()
                ib = gptq._blocked(importance.reshape(1, -1), block)
                amax = wb.abs().amax(-1).clamp(max=65504.0)
                scales = amax.to(torch.float16).to(torch.float32)
                weights = ib * scales.unsqueeze(-1) ** 2 + 1e-20
                sample = gptq._CodebookSample.of(wb, ib, 0)
                codebook = sample.codebook(scales, bits)
                times = [
                    cpu_ms(lambda: ref_search_scales(w, importance, bits, block, dtype, 0), args.repeat),  # noqa: B023
                    cpu_ms(lambda: gptq.search_scales(w, importance, bits, block, dtype, 0), args.repeat),  # noqa: B023
                    cpu_ms(lambda: ref_learn_codebook(ref_normalised(wb, scales.unsqueeze(-1)), bits, weights, max_samples=1 << 16), args.repeat),  # noqa: B023
                    cpu_ms(lambda: gptq._CodebookSample.of(wb, ib, 0).codebook(scales, bits), args.repeat),  # noqa: B023
                    cpu_ms(lambda: ref_best_clip(wb, ib, amax, scales, codebook, dtype, 1 << 16), args.repeat),  # noqa: B023
                    cpu_ms(lambda: gptq._best_clip(wb, ib, amax, scales, codebook, dtype), args.repeat),  # noqa: B023
                ]
                totals[0] += times[0]
                totals[1] += times[1]
                diff = float((new[0] - old[0]).abs().max())
                worst = max(worst, diff)
                same = torch.equal(new[1], old[1])
                all_scales_same &= same
                print(f"{name:10} {bits:>4} {block:>5} | {times[0]:>17.1f} {times[1]:>7.1f} {times[0] / times[1]:>5.2f} | {times[2]:>12.1f}"
                      f" {times[3]:>6.1f} {times[2] / times[3]:>5.2f} | {times[4]:>8.1f} {times[5]:>6.1f} {times[4] / times[5]:>5.2f} |"
                      f" codebook max diff {diff:.3g}, scales {'identical' if same else 'DIFFER'}", flush=True)  # fmt: skip
    print(f"search_scales total: old {totals[0]:.0f} ms, new {totals[1]:.0f} ms, {totals[0] / totals[1]:.2f}x less CPU time;"
          f" largest codebook difference {worst:.3g}; scales {'identical' if all_scales_same else 'NOT identical'} everywhere")  # fmt: skip
    print(f"load average after {os.getloadavg()}")


if __name__ == "__main__":
    main()
