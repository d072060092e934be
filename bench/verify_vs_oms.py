"""``uc verify`` against OpenSSF model signing's ``model_signing verify key``, as commands, in one run.

The two prove different things: ``model_signing verify key`` hashes every file
of the directory and checks one signature over the list; ``uc verify`` hashes
every file too and, in the same read, rebuilds every quantized tensor by the
canonical rule and hashes it (the tensor digests the acceptance attestation
signs). This script measures what the extra proof costs, on

  * the demo pack (SmolLM2-135M, ``make demo``), and
  * the large random pack of ``bench/verify_throughput.py`` (540M parameters;
    built there, or here with the same code, when missing).

For each pack: an OMS signature is made once with the peer's own command
(``model_signing sign key``, a fresh P-256 key), the page cache is warmed by
reading every file, then each command runs ``--repeats`` times, interleaved,
in the same run, with its wall time (interpreter start-up included; the
median is reported) and its verdict checked. ``uc verify`` runs this tree's
code (PYTHONPATH); ``--compare-tree DIR`` also times the ``uc verify`` of
another checkout (an older commit, with its built extension) in the same
run, so that a before/after ratio is measured under the same load. Prints a
table and one JSON line per pack.

    python bench/verify_vs_oms.py [--demo-pack build/demo/smollm2-135m.ucpack] [--work build/bench]
                                  [--repeats 3] [--compare-tree /tmp/old] [--pack PACK ...]

``--pack`` measures the packs given instead (e.g. the 6-block pack of bench/scale_1b.py).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

BIN = Path(sys.executable).parent


def _keypair(work: Path) -> tuple[Path, Path]:
    private, public = work / "oms-bench.key.pem", work / "oms-bench.pub.pem"
    if not private.exists():
        key = ec.generate_private_key(ec.SECP256R1())
        private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public


def _run(cmd: list[str], tree: Path | None = None) -> tuple[float, subprocess.CompletedProcess[str]]:
    env = {**os.environ, "PYTHONPATH": str(tree)} if tree else None
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    return time.perf_counter() - start, proc


def _warm(pack: Path) -> int:
    total = 0
    for path in sorted(pack.iterdir()):
        with open(path, "rb", buffering=0) as handle:
            while chunk := handle.read(16 << 20):
                total += len(chunk)
    return total


def _uc_verify(pack: Path, tree: Path) -> float:
    seconds, uc = _run([sys.executable, "-c", "from uc_attest._internal.cli.uc import main; main()", "verify", str(pack), "--quiet"], tree)
    assert uc.returncode == 0 and uc.stdout.splitlines()[-1] == "VERIFY: PASS", uc.stdout + uc.stderr
    return seconds


def measure(pack: Path, work: Path, repeats: int = 1, compare: Path | None = None) -> dict[str, object]:
    private, public = _keypair(work)
    signature = work / f"{pack.name}.model.sig"
    if not signature.exists():
        _, signed = _run([str(BIN / "model_signing"), "sign", "key", str(pack), "--private_key", str(private), "--signature", str(signature)])
        assert signed.returncode == 0, signed.stdout + signed.stderr
    size = _warm(pack)
    times: dict[str, list[float]] = {"uc": [], "oms": [], "before": []}
    for _ in range(repeats):  # interleaved, so that a change of load hits every command alike
        times["uc"].append(_uc_verify(pack, ROOT))
        t_oms, oms = _run([str(BIN / "model_signing"), "verify", "key", str(pack), "--signature", str(signature), "--public_key", str(public)])
        assert oms.returncode == 0, oms.stdout + oms.stderr
        times["oms"].append(t_oms)
        if compare is not None:
            times["before"].append(_uc_verify(pack, compare))
    from uc_attest._internal.pack.reader import open_pack

    manifest = open_pack(pack).manifest
    rebuilt = sum(2 * _numel(t.shape) for t in manifest.tensors if t.kind == "quantized")
    passthrough = sum(2 * _numel(t.shape) for t in manifest.tensors if t.kind == "passthrough")
    t_uc, t_oms = statistics.median(times["uc"]), statistics.median(times["oms"])
    row: dict[str, object] = {"pack": pack.name, "files_bytes": size, "rebuilt_bytes": rebuilt, "passthrough_bytes": passthrough,
                              "cores": os.cpu_count(), "repeats": repeats, "uc_verify_s": round(t_uc, 3),
                              "model_signing_verify_s": round(t_oms, 3), "ratio": round(t_uc / t_oms, 3),
                              "load_average": [round(x, 2) for x in os.getloadavg()]}  # fmt: skip
    from verify_throughput import sha256_rate_all_cores

    hashed = size + rebuilt + passthrough  # every file, then every tensor's digest over its (rebuilt or stored) bytes
    rate = statistics.median(sha256_rate_all_cores(os.cpu_count() or 1) for _ in range(3))
    row.update({"hashed_bytes": hashed, "sha256_all_cores_gb_s": round(rate / 1e9, 3), "hash_floor_s": round(hashed / rate, 3),
                "uc_over_hash_floor": round(t_uc / (hashed / rate), 3)})  # fmt: skip
    if compare is not None:
        t_before = statistics.median(times["before"])
        row.update({"compare_tree": str(compare), "uc_verify_before_s": round(t_before, 3), "ratio_before": round(t_before / t_oms, 3)})
    return row


def _numel(shape: list[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo-pack", default=str(ROOT / "build" / "demo" / "smollm2-135m.ucpack"))
    parser.add_argument("--work", default=str(ROOT / "build" / "bench"))
    parser.add_argument("--pack", action="append", type=Path, default=[],
                        help="an existing pack to measure instead of the demo and large packs (repeatable)")
    parser.add_argument("--skip-large", action="store_true", help="only the demo pack")
    parser.add_argument("--skip-demo", action="store_true", help="only the large random pack")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each command (median reported)")
    parser.add_argument("--compare-tree", type=Path, help="another checkout whose uc verify is timed in the same run")
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    packs = list(args.pack) if args.pack or args.skip_demo else [Path(args.demo_pack)]
    if not args.skip_large and not args.pack:
        from verify_throughput import build_model, build_pack

        packs.append(build_pack(build_model(work / "random-llama-540m"), work / "random-llama-540m.ucpack"))
    rows = [measure(pack, work, args.repeats, args.compare_tree) for pack in packs]
    print(f"{'pack':<28} {'files':>10} {'rebuilt':>10} {'uc verify':>10} {'model_signing':>14} {'ratio':>6}")
    for r in rows:
        print(f"{r['pack']:<28} {r['files_bytes'] / 1e9:>8.3f}GB {r['rebuilt_bytes'] / 1e9:>8.3f}GB "
              f"{r['uc_verify_s']:>9.3f}s {r['model_signing_verify_s']:>13.3f}s {r['ratio']:>5.2f}x")  # fmt: skip
        if "uc_verify_before_s" in r:
            print(f"{'  before (' + str(r['compare_tree']) + ')':<28} {'':>10} {'':>10} {r['uc_verify_before_s']:>9.3f}s {'':>14} {r['ratio_before']:>5.2f}x")
    for r in rows:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
