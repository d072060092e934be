"""``make demo``: the whole story on the embedded SmolLM2-135M, through the real CLIs.

Each step prints the command it runs, so the demo doubles as a worked example.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from .demo_model import SOURCE_NOTE, materialize_smollm2


def run(cmd: list[str], env: dict[str, str] | None = None, allow_fail: bool = False) -> subprocess.CompletedProcess[str]:
    print(f"\n$ {shlex.join(cmd)}", flush=True)
    start = time.perf_counter()
    proc = subprocess.run(cmd, text=True, stdout=subprocess.PIPE, env=env)
    print(proc.stdout, end="", flush=True)
    print(f"  [{time.perf_counter() - start:.1f} s, exit {proc.returncode}]", flush=True)
    if proc.returncode != 0 and not allow_fail:
        sys.exit(proc.returncode)
    return proc


def tool(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--work", default="build/demo", help="working directory")
    parser.add_argument("--max-windows", default="40", help="evaluation windows of 512 tokens")
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    model = work / "smollm2-135m"
    pack = work / "smollm2-135m.ucpack"

    print(f"== 1. baseline model: {SOURCE_NOTE}")
    materialize_smollm2(model)
    print(f"   {model}")

    print("\n== 2. vendor: compress at 5 bits (calibrated, one block resident at a time)")
    if pack.is_dir() and run([tool("uc"), "verify", str(pack), "--quiet"], allow_fail=True).returncode == 0:
        print(f"   reusing the verified pack at {pack} (delete it to compress again)")
    else:
        run([tool("uc"), "compress", str(model), "-o", str(pack), "--bits", "5", "--force",
             "--source-note", SOURCE_NOTE])  # fmt: skip

    print("\n== 3. verify every file hash and every reconstructed tensor")
    run([tool("uc"), "verify", str(pack)])
    run([tool("uc"), "inspect", str(pack)])

    print("\n== 4. perplexity of baseline and pack on held-out text (built-in, disjoint from calibration)")
    base = run([tool("uc"), "eval", str(model), "--max-windows", args.max_windows, "--quiet"])
    packed = run([tool("uc"), "eval", str(pack), "--max-windows", args.max_windows, "--quiet"])
    print(f"\nbaseline: {base.stdout.strip()}\npack:     {packed.stdout.strip()}")
    print("\nVERIFY: PASS")


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
