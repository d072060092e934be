"""Peak memory of ``uc verify`` and ``attest check`` when a file on disk claims far more than its signed size.

Issue 20 measured a 2 GiB sparse ``tokenizer.json`` (13 KB in the manifest)
costing 2.4 GiB of RAM, and a 2 GiB token file the same. This script copies a
signed delivery, swaps in such sparse files one at a time, runs the real
command in a child process and reports the child's peak resident set size
(``ru_maxrss``) beside the same command on the untouched delivery.

    .venv/bin/python bench/sparse_inputs_memory.py --delivery PACK BUNDLE TOKENS KEY [--size-gib 2]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = "import sys; from uc_attest._internal.cli.{group} import main; sys.argv[0] = '{group}'; main()"
# a fresh parent per measurement: RUSAGE_CHILDREN's ru_maxrss is a running maximum over all children
WRAP = (
    "import resource, subprocess, sys; p = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
    "last = (p.stdout.strip().splitlines() or p.stderr.strip().splitlines() or [''])[-1]; "
    "print(p.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, last[:120], sep='\\t')"
)


def peak_rss_mib(group: str, args: list[str]) -> tuple[int, float, str]:
    """(exit code, the command's peak RSS in MiB, its last output line), the command run in a fresh interpreter."""
    proc = subprocess.run([sys.executable, "-c", WRAP, sys.executable, "-c", CHILD.format(group=group), *args],
                          capture_output=True, text=True, check=True)  # fmt: skip
    rc, kib, last = proc.stdout.rstrip("\n").split("\t", 2)
    return int(rc), int(kib) / 1024, last


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--delivery", nargs=4, type=Path, metavar=("PACK", "BUNDLE", "TOKENS", "KEY"), required=True)
    ap.add_argument("--size-gib", type=float, default=2.0)
    args = ap.parse_args()
    pack, bundle, tokens, key = args.delivery
    size = int(args.size_gib * (1 << 30))
    rows = []
    with tempfile.TemporaryDirectory(prefix="uc-sparse-") as tmp:
        work = Path(tmp)
        copy = work / pack.name
        shutil.copytree(pack, copy)
        toks = work / tokens.name
        shutil.copyfile(tokens, toks)
        check = ["check", str(copy), "--bundle", str(bundle), "--tokens", str(toks), "--key", str(key), "--quiet"]
        rows.append(("uc verify, untouched pack", *peak_rss_mib("uc", ["verify", str(copy), "--quiet"])))
        original = (copy / "tokenizer.json").read_bytes()
        with open(copy / "tokenizer.json", "r+b") as handle:
            handle.truncate(size)
        rows.append((f"uc verify, tokenizer.json sparse {args.size_gib:g} GiB", *peak_rss_mib("uc", ["verify", str(copy), "--quiet"])))
        (copy / "tokenizer.json").write_bytes(original)
        with open(toks, "r+b") as handle:
            handle.truncate(size)
        rows.append((f"attest check, token file sparse {args.size_gib:g} GiB", *peak_rss_mib("attest", check)))
    print("| command | exit | peak RSS (MiB) | last line |")
    print("|---|---:|---:|---|")
    for name, rc, mib, last in rows:
        print(f"| {name} | {rc} | {mib:.0f} | {last} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
