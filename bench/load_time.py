"""Loading a pack versus loading the uncompressed model, on the same machine in one run.

    python bench/load_time.py [--model build/models/smollm2-135m] [--pack build/demo/smollm2-135m.ucpack]

Each load runs in a fresh interpreter (imports excluded: the child times only the
load call) and is repeated; the best of the repeats is compared.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys, time, torch
from transformers import AutoModelForCausalLM
import uc_attest
kind, path = sys.argv[1], sys.argv[2]
start = time.perf_counter()
if kind == "pack":
    model = uc_attest.load_model(path)
else:
    model = AutoModelForCausalLM.from_pretrained(path, dtype="auto")
print(json.dumps({"seconds": time.perf_counter() - start}))
"""


def timed(kind: str, path: Path) -> float:
    out = subprocess.run([sys.executable, "-c", CHILD, kind, str(path)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(ROOT / "build/models/smollm2-135m"))
    parser.add_argument("--pack", default=str(ROOT / "build/demo/smollm2-135m.ucpack"))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    base = min(timed("model", Path(args.model)) for _ in range(args.repeats))
    pack = min(timed("pack", Path(args.pack)) for _ in range(args.repeats))
    print(f"transformers from_pretrained (safetensors, bf16)  {base:.3f} s")
    print(f"uc_attest.load_model (verify + reconstruct)        {pack:.3f} s")
    print(f"ratio                                              {pack / base:.2f}x")


if __name__ == "__main__":
    main()
