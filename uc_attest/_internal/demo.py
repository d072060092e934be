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

from .version import __version__
from .demo_model import SOURCE_NOTE, materialize_smollm2

# Each block tensor's width and block size chosen by the compressor from measured sensitivity on
# calibration text, under a cap of 5.3 effective bits per weight (docs/COMPRESSION.md).
TARGET_BPW = 5.3


def reusable_pack(pack: Path) -> bool:
    """An existing demo pack is reused only if this version wrote it with the demo's options."""
    from .pack.reader import open_pack

    try:
        manifest = open_pack(pack).manifest
    except Exception:  # noqa: BLE001 - anything unreadable is simply rebuilt
        return False
    c = manifest.compression
    return (manifest.producer.version == __version__ and c.method == "calibrated" and c.calibration.get("target_bpw") == TARGET_BPW
            and manifest.model.source.note == SOURCE_NOTE)  # fmt: skip


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

    print(f"\n== 2. vendor: compress under {TARGET_BPW} bits per weight, widths chosen per tensor (calibrated, one block resident at a time)")
    if pack.is_dir() and reusable_pack(pack) and run([tool("uc"), "verify", str(pack), "--quiet"], allow_fail=True).returncode == 0:
        print(f"   reusing the verified pack at {pack} (delete it to compress again)")
    else:
        run([tool("uc"), "compress", str(model), "-o", str(pack), "--target-bpw", str(TARGET_BPW), "--force",
             "--source-note", SOURCE_NOTE])  # fmt: skip

    print("\n== 3. verify every file hash and every reconstructed tensor")
    run([tool("uc"), "verify", str(pack)])
    run([tool("uc"), "inspect", str(pack)])

    print("\n== 4. vendor: acceptance test (verify, perplexity of pack and baseline on held-out text) and signature")
    key = work / "vendor"
    env = dict(os.environ, UC_ATTEST_KEY_PASSPHRASE=os.environ.get("UC_ATTEST_KEY_PASSPHRASE", "demo passphrase"))
    run([tool("attest"), "keygen", "-o", str(key), "--force"], env=env)
    bundle = work / "smollm2-135m.sigstore.json"
    signed = run([tool("attest"), "sign", str(pack), "--key", f"{key}.key", "--baseline", str(model),
                  "--max-windows", args.max_windows, "-o", str(bundle), "--quiet"], env=env)  # fmt: skip

    print("\n== 5. customer: air-gapped check under policies/strict.toml; the customer signs its verdict and the PDF")
    customer = work / "customer"
    run([tool("attest"), "keygen", "-o", str(customer), "--organization", "Demo Hospital", "--force"], env=env)
    report, results = work / "report.pdf", work / "results.json"
    offline = dict(env, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    checked = run([tool("attest"), "check", str(pack), "--bundle", str(bundle), "--key", f"{key}.pub",
                   "--policy", str(policy_path("strict")), "--report", str(report), "--json", str(results),
                   "--sign-key", f"{customer}.key", "--quiet"], env=offline, allow_fail=True)  # fmt: skip

    print("\n== 6. auditor: verify the report with the vendor's and the customer's public keys")
    audited = run([tool("attest"), "verify-report", str(report), "--key", f"{key}.pub", "--customer-key", f"{customer}.pub"],
                  allow_fail=True)  # fmt: skip

    probed = probe_local_server(work, pack, bundle, key, customer, env=offline)

    print("\n== 9. auditor: verify the probe's report the same way")
    probe_audited = run([tool("attest"), "verify-report", str(work / "probe-report.pdf"), "--key", f"{key}.pub",
                         "--customer-key", f"{customer}.pub"], allow_fail=True)  # fmt: skip

    print("\n== summary")
    for line in signed.stdout.splitlines():
        if line.startswith(("perplexity", "baseline perplexity")):
            print(f"vendor    {line}")
    print(f"pack      {pack}")
    print(f"bundle    {bundle}")
    print(f"results   {results}")
    print(f"verdict   {results.with_name(results.stem + '.vsa.sigstore.json')} (signed by the customer)")
    print(f"report    {report}")
    print("VERIFY: PASS")
    print(f"probe     {work / 'probe-results.json'}, {work / 'probe-report.pdf'}")
    print(checked.stdout.strip().splitlines()[-1] if checked.stdout.strip() else "CHECK: FAIL")
    print(probed.stdout.strip().splitlines()[-1] if probed.stdout.strip() else "PROBE: FAIL")
    reports_verified = audited.returncode == 0 and probe_audited.returncode == 0
    print("REPORT: VERIFIED" if reports_verified else "REPORT: NOT VERIFIED")
    sys.exit(checked.returncode or probed.returncode or audited.returncode or probe_audited.returncode)


def probe_local_server(work: Path, pack: Path, bundle: Path, key: Path, customer: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Export the checked pack, prove the served directory's bytes, serve it on loopback, and probe the endpoint."""
    import socket

    print("\n== 7. deploy: export the checked pack as a Hugging Face directory and prove its bytes")
    served = work / "served"
    run([tool("uc"), "export", str(pack), "-o", str(served), "--force", "--quiet"])
    run([tool("uc"), "verify", str(pack), "--deployed", str(served), "--quiet"])

    print("\n== 8. customer: probe the running endpoint (reference server over transformers, bf16 compute) with the signed windows")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "uc_attest._internal.probe.serve_reference", str(served), "--port", str(port), "--name", "smollm2"],
                              env=env, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        _wait_for_port(port, server)
        return run([tool("attest"), "probe", f"http://127.0.0.1:{port}", "--pack", str(pack), "--bundle", str(bundle), "--key", f"{key}.pub",
                    "--policy", str(policy_path("strict")), "--json", str(work / "probe-results.json"),
                    "--report", str(work / "probe-report.pdf"), "--sign-key", f"{customer}.key", "--quiet"], env=env, allow_fail=True)  # fmt: skip
    finally:
        server.terminate()
        server.wait(timeout=30)


def _wait_for_port(port: int, server: subprocess.Popen[str], seconds: float = 300.0) -> None:
    import socket

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"the reference server stopped: {server.stderr.read() if server.stderr else ''}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.5)
    server.terminate()
    sys.exit(f"the reference server did not listen on port {port} within {seconds:g} s")


def policy_path(name: str) -> Path:
    from .policy.resources import policies_dir

    return policies_dir() / f"{name}.toml"


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
