"""``make bench``: every benchmark in one go, each printing its own table.

Slow peers are cached (bench/cache/); the demo's pack is reused when present
(run ``make demo`` first for the check and load benches).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO_PACK = ROOT / "build" / "demo" / "smollm2-135m.ucpack"

BENCHES: list[tuple[str, list[str]]] = [
    ("verify throughput", ["bench/verify_throughput.py"]),
    ("compression memory", ["bench/compress_memory.py"]),
    ("quality", ["bench/quality.py", *(["--reuse", f"5={DEMO_PACK}"] if DEMO_PACK.is_dir() else [])]),
    ("loading", ["bench/load_time.py"]),
    ("check end to end", ["bench/check_e2e.py"]),
    ("tamper campaign", ["bench/tamper_campaign.py", "--fail-fast"]),
]


def main() -> None:
    failed = []
    for title, argv in BENCHES:
        print(f"\n=== {title}: python {' '.join(argv)}", flush=True)
        if not (ROOT / argv[0]).is_file():
            print(f"(missing {argv[0]})")
            continue
        if argv[0] in ("bench/load_time.py", "bench/check_e2e.py") and not DEMO_PACK.is_dir():
            print("(skipped: run `make demo` first to build the demo pack)")
            continue
        if subprocess.run([sys.executable, *argv], cwd=ROOT).returncode != 0:
            failed.append(title)
    if failed:
        sys.exit(f"benchmarks that failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
