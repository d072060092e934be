"""Wall time of ``attest check`` on the SmolLM2 demo delivery, by stage, against ``uc verify`` and the previous check.

    nice .venv/bin/python bench/check_e2e.py [--work build/demo] [--before /path/to/older/checkout]

Needs the demo's pack, bundle and vendor key (run ``make demo`` first; a copy
of the delivery is fine). Three measurements, all on this machine:

1. the check in process (the CLI's own pipeline, strict policy), by stage, and
   one ``verify_pack`` of the same pack (the pass ``uc verify`` makes; with the
   architecture check, as the check runs it), after a warm-up of both. Target:
   the stages other than the perplexity measurement take <= 1.1x that verify.
2. the whole ``attest check`` command in a fresh process: this tree streaming
   (the default), this tree ``--no-streaming``, and, with ``--before``, the
   same command run from an older checkout (today's check before this change).
   Target: this tree's check is faster than the older one.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
MEASUREMENT_STAGE = "tokens and perplexity"


def cli_seconds(tree: Path, pack: Path, bundle: Path, pub: Path, *extra: str) -> tuple[float, str]:
    """Wall time of ``attest check`` run as a fresh process from the code in ``tree``."""
    cmd = [sys.executable, "-c", "from uc_attest._internal.cli.attest import main; main()", "check", str(pack), "--bundle", str(bundle),
           "--key", str(pub), "--policy", "strict", "--quiet", *extra]  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tree, env={**os.environ, "PYTHONPATH": str(tree)})
    seconds = time.perf_counter() - start
    last = (proc.stdout + proc.stderr).strip().splitlines()[-1:]
    return seconds, f"rc {proc.returncode} {' '.join(last)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default=str(ROOT / "build" / "demo"))
    parser.add_argument("--before", help="an older checkout whose `attest check` to time beside this one")
    parser.add_argument("--repeats", type=int, default=3, help="verify_pack runs (median)")
    parser.add_argument("--no-whole-model-cli", action="store_true", help="skip the --no-streaming command (one evaluation less)")
    args = parser.parse_args()
    work = Path(args.work)
    pack, bundle, pub = work / "smollm2-135m.ucpack", work / "smollm2-135m.sigstore.json", work / "vendor.pub"
    for path in (pack, bundle, pub):
        if not path.exists():
            sys.exit(f"missing {path}: run `make demo` first")

    from uc_attest._internal.attest.trust import KeyAnchor
    from uc_attest._internal.check.run import CheckInputs, run_check
    from uc_attest._internal.evaluate.settings import EvalSettings
    from uc_attest._internal.pack.verify import verify_pack
    from uc_attest._internal.policy.loader import load_policy

    verify_pack(pack, progress=False, architecture=True)  # warm: imports, page cache
    verify_s = statistics.median(_timed(lambda: verify_pack(pack, progress=False, architecture=True)) for _ in range(args.repeats))
    outcome = run_check(CheckInputs(pack=pack, bundle=bundle, trust=KeyAnchor(pub), policy=load_policy("strict"),
                                    evaluation=EvalSettings(progress=False)))
    other = sum(s for stage, s in outcome.timings.items() if stage != MEASUREMENT_STAGE)
    print(f"attest check in process, verdict {outcome.results.verdict.value}")
    for stage, seconds in outcome.timings.items():
        print(f"  {stage:<32} {seconds:8.2f} s")
    print(f"  stages other than perplexity     {other:8.2f} s")
    print(f"verify_pack (uc verify --architecture), median of {args.repeats}: {verify_s:.2f} s")
    print(f"ratio other stages / one verify: {other / verify_s:.3f} (target <= 1.1)")
    measured = outcome.results.perplexity.measured if outcome.results.perplexity else None
    if measured is not None:
        print(f"perplexity measured here {measured.perplexity_hex}, signed {outcome.results.perplexity.attested.perplexity_hex}, "
              f"bit-identical: {outcome.results.perplexity.bit_identical}")  # fmt: skip

    rows: list[tuple[str, Path, tuple[str, ...]]] = [("this tree, streaming (default)", ROOT, ())]
    if not args.no_whole_model_cli:
        rows.append(("this tree, --no-streaming", ROOT, ("--no-streaming",)))
    if args.before:
        rows.append((f"before: {args.before}", Path(args.before), ()))
    for label, tree, extra in rows:
        seconds, verdict = cli_seconds(tree, pack, bundle, pub, *extra)
        print(f"attest check CLI, {label:<40} {seconds:8.2f} s  ({verdict})")


def _timed(run: object) -> float:
    start = time.perf_counter()
    run()  # type: ignore[operator]
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
