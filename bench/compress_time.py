"""Compression time, old against new, in one run on one machine: `uc compress --target-bpw` from two source trees.

The old tree is a git worktree of an earlier commit (e.g. ``git worktree add
/tmp/old9c3 9c3eb39`` with the codec's compiled extension copied into it);
the new one is this checkout. Each compresses the same model with the same
options in a child process (``PYTHONPATH`` pointing at its tree), one after
the other, and the script reports wall time, the child's CPU time (user +
system: less sensitive to other jobs than wall time on a shared machine) and
the load average before and after. Both runs read the same calibration file
(the new tree's default mix, written once), so the two differ only by code;
the new run's other defaults (damping, threads) are the new ones. Three runs: the old tree, the new
tree doing the old one's job ("like-for-like": ``--incoherence off``, the domain the old tree did not have),
and the new tree with every default ("new"). Then each
pack is measured on the same windows of the three evaluation domains:
perplexity ratio and KL(original || pack) per token, mean and 99th
percentile (uc_attest._internal.evaluate.kl, the new tree's code for both packs). With ``--rounds N`` the three runs are
repeated N times, interleaved, each round with its own ratios (the machine's speed drifts between rounds), and
quality is measured once, on the last round's packs.

With ``--layers N`` both trees compress a copy of the model cut to its first N
decoder blocks (the real weights of those blocks, embeddings and head; config
``num_hidden_layers`` = N): the same per-block work at a fraction of the time,
for a busy machine; quality is then not measured (the cut model is not the model).

    python bench/compress_time.py --old /tmp/old9c3 [--model DIR] [--target-bpw 5.3] [--samples 128] [--eval-windows 40] [--layers N] [--rounds N]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

def cli_for(tree: Path) -> str:
    """The ``uc`` entry point of a tree: under ``_internal`` since issue 29 moved the internals, at the top before."""
    module = "uc_attest._internal.cli.uc" if (tree / "uc_attest" / "_internal").is_dir() else "uc_attest.cli.uc"
    return f"from {module} import main; main()"


# the new tree doing the old tree's job: the incoherence domain did not exist there (9c3eb39), so like for like is the
# new code with it off; "new" is the new tree with every default (what a vendor runs)
LIKE_FOR_LIKE = ["--incoherence", "off"]


def compress(tree: Path, model: Path, out: Path, args: argparse.Namespace, calibration: Path,
             extra: list[str] | None = None) -> dict[str, object]:  # fmt: skip
    """One ``uc compress`` from ``tree`` in a child process: wall and CPU seconds, load average around it."""
    cmd = [sys.executable, "-c", cli_for(tree), "compress", str(model), "-o", str(out), "--target-bpw", str(args.target_bpw),
           "--samples", str(args.samples), "--calibration", str(calibration), "--force", "--quiet", *(extra or [])]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(tree))
    load_before = os.getloadavg()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    # cwd = the tree: ``python -c`` puts the working directory before PYTHONPATH on sys.path
    done = subprocess.run(cmd, env=env, cwd=tree, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{tree}: uc compress failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    manifest = json.loads((out / "ucpack.json").read_text())
    return {
        "tree": str(tree),
        "extra_options": " ".join(extra or []),
        "wall_seconds": round(wall, 1),
        "cpu_seconds": round((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), 1),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "bpw": manifest["stats"]["effective_bits_per_weight"],
        "manifest_sha256_prefix": __import__("hashlib").sha256((out / "ucpack.json").read_bytes()).hexdigest()[:16],
        "manifest_has_rebuild_recipe": "rebuild" in manifest["compression"],  # which tree's code really ran
    }


def quality(model: Path, pack: Path, windows: int) -> dict[str, dict[str, float]]:
    """Perplexity ratio and KL(original || pack) on each evaluation domain's first ``windows`` windows of 512 tokens."""
    from uc_attest._internal.evaluate.measure import measure_against_reference
    from uc_attest._internal.evaluate.settings import EvalSettings
    from uc_attest._internal.evaluate.mixed_text import info_eval_text, licence_eval_text
    from uc_attest._internal.evaluate.text import default_eval_text
    from uc_attest._internal.evaluate.tokens import tokenize_text

    out = {}
    for name, text in (("in-domain", default_eval_text), ("licence", licence_eval_text), ("info", info_eval_text)):
        ids = tokenize_text(model, text())
        compared = measure_against_reference(pack, model, ids, EvalSettings(seq_len=512, max_windows=windows, streaming=False, progress=False))
        out[name] = {"ratio": round(compared.kl.perplexity_ratio, 5), "kl_mean": round(compared.kl.mean, 6),
                     "kl_p99": round(compared.kl.p99, 5), "windows": compared.kl.windows}  # fmt: skip
    return out


def truncated(model: Path, layers: int, target: Path) -> Path:
    """A copy of ``model`` with only its first ``layers`` decoder blocks (tensors ``*.layers.K.*`` with K >= layers dropped)."""
    import re
    import shutil

    from safetensors.torch import load_file, save_file

    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for path in model.iterdir():
        if path.suffix == ".safetensors":
            tensors = {k: v for k, v in load_file(str(path)).items()
                       if not (m := re.search(r"\.layers\.(\d+)\.", k)) or int(m.group(1)) < layers}  # fmt: skip
            save_file(tensors, str(target / path.name), metadata={"format": "pt"})
        elif path.name == "config.json":
            config = json.loads(path.read_text())
            config["num_hidden_layers"] = layers
            (target / path.name).write_text(json.dumps(config, indent=1))
        elif path.is_file():
            shutil.copy(path, target / path.name)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", type=Path, required=True, help="the old source tree (a git worktree of the earlier commit)")
    parser.add_argument("--model", type=Path, default=ROOT / "build" / "models" / "smollm2-135m")
    parser.add_argument("--target-bpw", type=float, default=5.3)
    parser.add_argument("--samples", type=int, default=128)
    parser.add_argument("--eval-windows", type=int, default=40, help="0: no quality measurement")
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "compress-time")
    parser.add_argument("--only", choices=("old", "new", "like-for-like"), help="time one run only")
    parser.add_argument("--layers", type=int, help="compress the model cut to its first N decoder blocks (no quality measured)")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds of the runs, each with its own ratios")
    args = parser.parse_args()
    args.model = args.model.resolve()  # each child runs in its own tree: a relative path would name another directory
    if not (args.model / "config.json").is_file():
        from uc_attest._internal.demo_model import materialize_smollm2

        materialize_smollm2(args.model)
    from uc_attest._internal.evaluate.mixed_text import calibration_mix_text

    args.work.mkdir(parents=True, exist_ok=True)
    if args.layers:
        args.model = truncated(args.model, args.layers, args.work / f"model-{args.layers}-layers")
        args.eval_windows = 0
    calibration = args.work / "calibration.txt"
    calibration.write_text(calibration_mix_text(), encoding="utf-8")
    results: dict[str, object] = {"model": str(args.model), "layers": args.layers, "target_bpw": args.target_bpw,
                                  "samples": args.samples, "cpu_count": os.cpu_count()}  # fmt: skip
    runs = [(label, tree, extra) for label, tree, extra in
            (("old", args.old.resolve(), []), ("like-for-like", ROOT, LIKE_FOR_LIKE), ("new", ROOT, []))
            if not args.only or label == args.only]  # fmt: skip
    # rounds interleave the trees (old, like for like, new, old, ...) so that each round's ratios compare runs a few
    # minutes apart: this machine's speed drifts by 10-20 % over tens of minutes, more than the gaps measured here
    for round_index in range(args.rounds):
        timed: dict[str, dict[str, object]] = {}
        for label, tree, extra in runs:
            pack = args.work / f"{label}.ucpack"
            timed[label] = compress(tree, args.model, pack, args, calibration, extra)
            print(f"round {round_index + 1} {label}: {timed[label]}", file=sys.stderr, flush=True)
        for label in ("like-for-like", "new"):
            if "old" in timed and label in timed:
                for unit in ("wall", "cpu"):
                    timed[f"{label}_over_old_{unit}"] = round(timed[label][f"{unit}_seconds"] / timed["old"][f"{unit}_seconds"], 3)  # type: ignore[assignment,operator]
        results[f"round_{round_index + 1}"] = timed
    if args.eval_windows:  # the last round's packs (every round writes the same bytes: the runs are reproducible)
        for label, _tree, _extra in runs:
            results[f"{label}_quality"] = quality(args.model, args.work / f"{label}.ucpack", args.eval_windows)
            print(f"{label} quality: {results[f'{label}_quality']}", file=sys.stderr, flush=True)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
