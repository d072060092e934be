"""Peak memory of ``attest verify-report`` on a report whose results.json is a Flate bomb.

Takes a genuine report, replaces its embedded results.json by a stream that
inflates to ``--inflate-mib`` MiB of spaces (about 1 MB on disk for 1 GiB),
and runs ``attest verify-report`` on the genuine and on the bombed report in
child processes, reporting each one's peak RSS (ru_maxrss of the child), exit
code and last line. Before the capped streaming reader, the bombed report cost
about twice the inflated size (issue 20, defect 2).

    python bench/verify_report_memory.py --report build/demo/report.pdf \\
        --key build/demo/vendor.pub --customer-key build/demo/customer.pub
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path


def flate_bomb(mib: int) -> bytes:
    """zlib data that inflates to ``mib`` MiB of spaces, made in 1 MiB steps (never holds the inflated bytes)."""
    compressor = zlib.compressobj(9)
    chunk = b" " * (1 << 20)
    parts = [compressor.compress(chunk) for _ in range(mib)]
    parts.append(compressor.flush())
    return b"".join(parts)


def bombed_copy(report: Path, out: Path, mib: int) -> None:
    import pikepdf

    with pikepdf.open(report) as pdf:
        stream = pdf.attachments["results.json"].get_file().obj
        stream.write(flate_bomb(mib), filter=pikepdf.Name.FlateDecode)
        pdf.save(out)


def run_measured(args: list[str]) -> dict[str, object]:
    """Run one command in a child and report its own peak RSS (a fresh child per run, so maxima do not mix)."""
    probe = (
        "import resource, subprocess, sys, json;"
        "p = subprocess.run(sys.argv[1:], capture_output=True, text=True);"
        "print(json.dumps({'rc': p.returncode, 'last': (p.stdout.strip().splitlines() or [''])[-1],"
        " 'err': p.stderr.strip()[:200], 'peak_rss_mib': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))"
    )
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, check=True)
    result = json.loads(done.stdout)
    result["seconds"] = round(time.perf_counter() - started, 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--report", type=Path, required=True)
    parser.add_argument("--key", type=Path, required=True, help="vendor.pub")
    parser.add_argument("--customer-key", type=Path, required=True, help="customer.pub")
    parser.add_argument("--inflate-mib", type=int, default=1024)
    args = parser.parse_args()
    attest = str(Path(sys.executable).parent / "attest")
    with tempfile.TemporaryDirectory() as tmp:
        bomb = Path(tmp) / "bomb.pdf"
        bombed_copy(args.report, bomb, args.inflate_mib)
        common = ["--key", str(args.key), "--customer-key", str(args.customer_key)]
        rows = {
            "genuine": {"file_bytes": args.report.stat().st_size, **run_measured([attest, "verify-report", str(args.report), *common])},
            "bomb": {"file_bytes": bomb.stat().st_size, "inflates_to_mib": args.inflate_mib, **run_measured([attest, "verify-report", str(bomb), *common])},
        }
    print(json.dumps({"cpu_count": os.cpu_count(), "maxrss_unit": "MiB", "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
