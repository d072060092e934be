"""Wall time of ``attest check`` on the SmolLM2 demo pack, split by stage, beside a plain ``uc eval``.

    python bench/check_e2e.py [--work build/demo]

Needs the demo's pack, bundle and vendor key (run ``make demo`` first). The check
runs in-process through the same pipeline the CLI uses; the plain evaluation
loads the pack and evaluates the same attested tokens with the same method.
Target: the check's stages other than evaluation add at most 25% to the
evaluation's time.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default=str(ROOT / "build" / "demo"))
    args = parser.parse_args()
    work = Path(args.work)
    pack, bundle, pub = work / "smollm2-135m.ucpack", work / "smollm2-135m.sigstore.json", work / "vendor.pub"
    for path in (pack, bundle, pub):
        if not path.exists():
            sys.exit(f"missing {path}: run `make demo` first")

    from uc_attest import load_model
    from uc_attest.attest.paths import tokens_path_for_bundle
    from uc_attest.check.pipeline import CheckInputs, run_check
    from uc_attest.evaluate.perplexity import evaluate_tokens
    from uc_attest.evaluate.tokens import load_token_file
    from uc_attest.policy.loader import load_policy

    policy = load_policy("strict")
    start = time.perf_counter()
    outcome = run_check(CheckInputs(pack=pack, bundle=bundle, tokens=None, public_key=pub, trusted_root=None,
                                    identity=None, issuer=None, policy=policy, progress=False))  # fmt: skip
    check_total = time.perf_counter() - start

    start = time.perf_counter()
    ids, _, _ = load_token_file(tokens_path_for_bundle(bundle))
    measurement = outcome.results.perplexity
    model = load_model(pack)
    loaded = time.perf_counter()
    attested = measurement.attested if measurement else None
    seq_len = attested.seq_len if attested else 512
    windows = attested.windows if attested else None
    evaluate_tokens(model, ids, seq_len=seq_len, max_windows=windows, progress=False)
    eval_total = time.perf_counter() - start

    print(f"attest check verdict {outcome.results.verdict.value}, total {check_total:.2f} s")
    for stage, seconds in outcome.timings.items():
        print(f"  {stage:<36} {seconds:8.2f} s")
    print(f"plain evaluation (load {loaded - start:.2f} s + perplexity)  {eval_total:8.2f} s")
    overhead = check_total - eval_total
    print(f"check minus evaluation                  {overhead:8.2f} s = {overhead / eval_total:.1%} of the evaluation")


if __name__ == "__main__":
    main()
