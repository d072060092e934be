"""Every input the tool reads, through the real commands, mutated for nesting, size and range: never "internal error".

Inputs and the command that reads each: the policy (``attest check --policy``),
results.json (``attest report``), the bundle (``attest check --bundle``), the
token file (``uc eval --tokens``), the manifest (``uc verify``), a model's
config.json (``uc eval MODEL_DIR``) and a customer-signed report PDF (``attest verify-report``).
Each gets deterministic mutations (nested 100k deep, grown past its size cap,
every number swapped for -1, 2**63, 1e308, NaN, Infinity) and seeded random ones
(byte flips, cuts, splices, JSON-aware edits from fuzz_readers.py). A command
may accept the input or refuse it with a one-line error (exit 1 or 2); an
uncaught exception, which the CLI reports as "internal error", is a failure.
The signed report is stricter: the genuine one verifies, and any byte change
to it (every mutation, and one flipped byte in each region of the file: the
rendered part, the signature's /Contents hex, the signature update) must end
in exit 1 or 2, never 0.
"""

from __future__ import annotations

import json
import random
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fuzz_readers import mutate
from support.cli import run_cli

pytestmark = pytest.mark.slow  # the shared signed delivery (tests/conftest.py)

DEEP = 100_000
RANGE_VALUES = ["-1", str(2**63), "1e308", "NaN", "Infinity", "-0.0", "1e-320"]
RANDOM_PER_INPUT = 5


def _json_number_swaps(data: bytes) -> Iterator[bytes]:
    """The document with its numbers replaced, one extreme at a time (all numbers at once, and the first one alone)."""
    text = data.decode("utf-8", errors="replace")
    number = re.compile(r'(?<=[:\[,\s])-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?(?=[,\]\}\s])')
    for value in RANGE_VALUES:
        yield number.sub(value, text).encode()
        yield number.sub(value, text, count=1).encode()


def _toml_number_swaps(data: bytes) -> Iterator[bytes]:
    text = data.decode()
    for value in ("-1", str(2**63), "1e308", "nan", "inf", "-inf", "0"):
        yield re.sub(r"(?m)^(\w+ = )-?[\d.]+\s*(#.*)?$", rf"\g<1>{value}", text).encode()


def _nested_json(data: bytes) -> Iterator[bytes]:
    yield b"[" * DEEP + b"]" * DEEP
    text = data.decode("utf-8", errors="replace")
    yield text.replace("{", '{"deep": ' + "[" * DEEP + "]" * DEEP + ", ", 1).encode()


def _oversized(data: bytes, cap: int) -> Iterator[bytes]:
    yield data + b" " * (cap + 1 - len(data))


def _random(data: bytes, seed: int, safetensors: bool = False) -> Iterator[bytes]:
    rng = random.Random(seed)
    for _ in range(RANDOM_PER_INPUT):
        yield mutate(data, rng, [], safetensors=safetensors)


def _assert_no_internal_error(name: str, i: int, rc: int, err: str) -> None:
    assert rc in (0, 1, 2), (name, i, rc, err)
    assert "internal error" not in err and "Traceback" not in err, (name, i, err)


@pytest.fixture(scope="module")
def report_pdf(delivery_root: tuple[Path, Any], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """results.json and report.pdf of a passing check of the shared delivery, verdict and PDF signed by the customer."""
    root = delivery_root[0]
    out = tmp_path_factory.mktemp("fuzz-report")
    env = {"UC_ATTEST_KEY_PASSPHRASE": ""}
    rc, _out, err = run_cli("attest", "keygen", "-o", out / "customer", "--organization", "Example Hospital", env=env)
    assert rc == 0, err
    rc, _out, err = run_cli("attest", "check", root / "pack", "--bundle", root / "pack.sigstore.json", "--tokens",
                            root / "pack.eval-tokens.safetensors", "--key", root / "vendor.pub", "--json", out / "r.json",
                            "--report", out / "r.pdf", "--sign-key", out / "customer.key", "--quiet", env=env)  # fmt: skip
    assert rc == 0, err
    return out / "r.json", out / "r.pdf"


def _run_all(name: str, original: Path, variants: Iterator[bytes], command: Callable[[], tuple[int, str, str]]) -> int:
    pristine = original.read_bytes()
    count = 0
    try:
        for i, data in enumerate(variants):
            original.write_bytes(data)
            rc, _out, err = command()
            _assert_no_internal_error(name, i, rc, err)
            count += 1
    finally:
        original.write_bytes(pristine)
    return count


def test_policy(site: Any, tmp_path: Path) -> None:
    from uc_attest._internal.policy.loader import MAX_POLICY_BYTES
    from uc_attest._internal.policy.resources import shipped_policy_path

    policy = tmp_path / "p.toml"
    shutil.copyfile(shipped_policy_path("default"), policy)
    data = policy.read_bytes()
    deep = [b'version = 1\nname = "x"\nx = ' + b"[" * DEEP + b"]" * DEEP + b"\n",
            b'version = 1\nname = "x"\nx = ' + b"{a = " * DEEP + b"1" + b"}" * DEEP + b"\n"]  # fmt: skip
    variants = [*deep, *_oversized(data, MAX_POLICY_BYTES), *_toml_number_swaps(data), *_random(data, 1)]
    n = _run_all("policy", policy, iter(variants), lambda: run_cli(
        "attest", "check", site.pack, "--bundle", site.bundle, "--tokens", site.tokens, "--key", site.key,
        "--policy", policy, "--quiet", "--fail-fast"))  # fmt: skip
    assert n == len(variants)


def test_results_json(report_pdf: tuple[Path, Path], tmp_path: Path) -> None:
    from uc_attest._internal.cli.attest_report import MAX_RESULTS_BYTES

    results = tmp_path / "r.json"
    shutil.copyfile(report_pdf[0], results)
    data = results.read_bytes()
    variants = [*_nested_json(data), *_json_number_swaps(data), *_random(data, 2)]
    sparse = tmp_path / "big.json"
    with open(sparse, "wb") as handle:
        handle.truncate(MAX_RESULTS_BYTES + 1)
    rc, _out, err = run_cli("attest", "report", sparse, "-o", tmp_path / "big.pdf")
    _assert_no_internal_error("results size", 0, rc, err)
    assert rc == 2
    ran = _run_all("results", results, iter(variants), lambda: run_cli("attest", "report", results, "-o", tmp_path / "out.pdf"))
    assert ran == len(variants) > 0, f"{ran} of {len(variants)} variants ran"


def test_bundle(site: Any) -> None:
    from uc_attest._internal.attest.bundle import MAX_BUNDLE_BYTES

    data = site.bundle.read_bytes()
    payload_doc = json.loads(data)
    variants = [*_nested_json(data), *_oversized(data, MAX_BUNDLE_BYTES), *_json_number_swaps(data), *_random(data, 3)]
    payload_doc["dsseEnvelope"]["payload"] = "A" * 4096  # base64 of garbage, not a statement
    variants.append(json.dumps(payload_doc).encode())
    ran = _run_all("bundle", site.bundle, iter(variants), lambda: run_cli(
        "attest", "check", site.pack, "--bundle", site.bundle, "--tokens", site.tokens, "--key", site.key, "--quiet",
        "--fail-fast"))  # fmt: skip
    assert ran == len(variants) > 0, f"{ran} of {len(variants)} variants ran"


def test_token_file(site: Any) -> None:
    import torch

    from uc_attest._internal.evaluate.tokens import token_file_bytes

    data = site.tokens.read_bytes()
    ids = torch.arange(100, dtype=torch.int64)
    variants = [*_random(data, 4, safetensors=True)]
    for bad in (-1, 2**40, 2**63 - 1):
        out = ids.clone()
        out[7] = bad
        variants.append(token_file_bytes(out, {"count": "100"}))
    variants.append(token_file_bytes(ids, {"count": "x" * 100_000}))
    variants.append(token_file_bytes(ids.reshape(10, 10), {}))
    ran = _run_all("tokens", site.tokens, iter(variants), lambda: run_cli("uc", "eval", site.pack, "--tokens", site.tokens, "--seq-len", "24"))
    assert ran == len(variants) > 0, f"{ran} of {len(variants)} variants ran"


def test_manifest(site: Any) -> None:
    manifest = site.pack / "ucpack.json"
    data = manifest.read_bytes()
    variants = [*_nested_json(data), *_json_number_swaps(data), *_random(data, 5)]
    ran = _run_all("manifest", manifest, iter(variants), lambda: run_cli("uc", "verify", site.pack, "--quiet"))
    assert ran == len(variants) > 0, f"{ran} of {len(variants)} variants ran"


def test_config(delivery_root: tuple[Path, Any], tmp_path: Path) -> None:
    model = tmp_path / "model"
    shutil.copytree(delivery_root[0] / "model", model)
    config = model / "config.json"
    data = config.read_bytes()
    variants = [*_nested_json(data), *_oversized(data, 16 << 20), *_json_number_swaps(data), *_random(data, 6)]
    tokens = delivery_root[0] / "pack.eval-tokens.safetensors"
    ran = _run_all("config", config, iter(variants), lambda: run_cli("uc", "eval", model, "--tokens", tokens, "--seq-len", "24", "--max-windows", "1"))
    assert ran == len(variants) > 0, f"{ran} of {len(variants)} variants ran"


def test_report_pdf(report_pdf: tuple[Path, Path], delivery_root: tuple[Path, Any], tmp_path: Path) -> None:
    pdf = tmp_path / "r.pdf"
    shutil.copyfile(report_pdf[1], pdf)
    data = pdf.read_bytes()
    from uc_attest._internal.report.signed_layout import read_report_layout

    def verify() -> tuple[int, str, str]:
        return run_cli("attest", "verify-report", pdf, "--key", delivery_root[0] / "vendor.pub", "--customer-key", report_pdf[1].parent / "customer.pub")

    rc, out, err = verify()
    assert rc == 0 and out.rstrip().endswith("REPORT: VERIFIED"), out + err
    layout = read_report_layout(data)
    assert layout.signature is not None
    _zero, a, b, _c = layout.signature.byte_range
    flips = [9, layout.rendered_end // 2, layout.rendered_end - 3, a + 1, a + 40, (a + b) // 2, b - 2, b + 5, len(data) - 30]
    variants = [b"not a pdf", data[: len(data) // 2], data[:1024], b"%PDF-1.7\n" + b"[" * DEEP, *_random(data, 7)]
    variants += [data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1 :] for i in flips]
    variants += [data + b"\n", data[:-1]]
    pristine = pdf.read_bytes()
    try:
        for i, variant in enumerate(v for v in variants if v != data):
            pdf.write_bytes(variant)
            rc, out, err = verify()
            _assert_no_internal_error("pdf", i, rc, err)
            assert rc in (1, 2), ("a changed signed report must not verify", i, out)
    finally:
        pdf.write_bytes(pristine)
