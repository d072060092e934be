"""Interoperability: sigstore-js (npm ``sigstore``) verifies our key-mode bundles offline.

sigstore-js is installed by the project's set-up (``make venv`` runs ``npm ci``
in tests/attest/js with the committed package-lock.json), so the test suite
itself never contacts a registry. Verifying needs nothing: the JS side blocks
every socket before it starts. In CI (``CI`` set) a missing installation is a
failure; elsewhere the tests are skipped with the command that installs it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from uc_attest._internal.attest.acceptance import SignOptions, sign_pack
from uc_attest._internal.attest.keys import Algorithm, generate_private_key, public_key_pem
from uc_attest._internal.evaluate.settings import EvalSettings

HERE = Path(__file__).parent
SCRIPT = HERE / "js" / "verify_key_bundle.js"
PACKAGE = HERE / "js" / "node_modules" / "sigstore"
V1 = HERE.parent / "golden" / "attest" / "v1"


def _locked_version() -> str:
    lock = json.loads((HERE / "js" / "package-lock.json").read_text())
    return str(lock["packages"]["node_modules/sigstore"]["version"])


@pytest.fixture(scope="module")
def sigstore_js() -> tuple[str, Path]:
    node = shutil.which("node")
    installed = PACKAGE / "package.json"
    missing = None
    if not node:
        missing = "node is not installed"
    elif not installed.is_file() or json.loads(installed.read_text()).get("version") != _locked_version():
        missing = "sigstore-js is not installed at the locked version (run: make venv, or npm ci --prefix tests/attest/js)"
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"{missing}: the CI set-up must install it")
        pytest.skip(missing)
    assert node is not None
    return node, PACKAGE


def _js_verify(sigstore_js: tuple[str, Path], bundle: Path, pub: Path) -> subprocess.CompletedProcess[str]:
    node, package = sigstore_js
    return subprocess.run([node, str(SCRIPT), str(package), str(bundle), str(pub)], capture_output=True, text=True, timeout=120)


def _flip_one_payload_byte(bundle: Path, out: Path) -> Path:
    data = json.loads(bundle.read_bytes())
    payload = bytearray(base64.b64decode(data["dsseEnvelope"]["payload"]))
    payload[len(payload) // 2] ^= 0x01
    data["dsseEnvelope"]["payload"] = base64.b64encode(bytes(payload)).decode()
    out.write_text(json.dumps(data, indent=2))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", list(Algorithm))
def test_sigstore_js_verifies_attest_sign_bundle(sigstore_js, tiny_pack: Path, eval_text: Path, tmp_path: Path, algorithm: Algorithm) -> None:  # type: ignore[no-untyped-def]
    key = generate_private_key(algorithm)
    pub = tmp_path / "vendor.pub"
    pub.write_bytes(public_key_pem(key.public_key()))
    result = sign_pack(SignOptions(pack=tiny_pack, key=key, eval_text=eval_text, evaluation=EvalSettings(seq_len=16, max_windows=2, progress=False)))

    ok = _js_verify(sigstore_js, result.bundle, pub)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.startswith("VERIFIED https://uc-attest.dev/acceptance-test/v1")

    bad = _js_verify(sigstore_js, _flip_one_payload_byte(result.bundle, tmp_path / "bad.json"), pub)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert bad.stdout.startswith("REJECTED")


def test_sigstore_js_refuses_another_key(sigstore_js, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    other = tmp_path / "other.pub"
    other.write_bytes(public_key_pem(generate_private_key().public_key()))
    r = _js_verify(sigstore_js, V1 / "p256.sigstore.json", other)
    assert r.returncode == 1 and r.stdout.startswith("REJECTED"), r.stdout + r.stderr


@pytest.mark.parametrize("name", ["p256", "ed25519"])
def test_sigstore_js_verifies_golden_bundles(sigstore_js, name: str) -> None:  # type: ignore[no-untyped-def]
    r = _js_verify(sigstore_js, V1 / f"{name}.sigstore.json", V1 / f"{name}.pub")
    assert r.returncode == 0, r.stdout + r.stderr


def test_sigstore_js_verifies_the_customers_signed_verdict(sigstore_js, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The customer's VSA bundle (key mode) is a standard Sigstore bundle: sigstore-js verifies it, and refuses a flipped byte."""
    from support.report_samples import make_results, sample_bundle

    from uc_attest._internal.attest.signing import sign_statement
    from uc_attest._internal.check.vsa import VSA_PREDICATE_TYPE, build_vsa_statement

    results = make_results("PASS")
    vendor_bundle = sample_bundle()
    assert results.digests.bundle_sha256 == hashlib.sha256(vendor_bundle).hexdigest()
    customer = generate_private_key(Algorithm.P256)
    pub = tmp_path / "customer.pub"
    pub.write_bytes(public_key_pem(customer.public_key()))
    vsa = tmp_path / "results.vsa.sigstore.json"
    vsa.write_bytes(sign_statement(build_vsa_statement(results, results.to_json_bytes(), results.digests.bundle_sha256), customer))

    ok = _js_verify(sigstore_js, vsa, pub)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.startswith(f"VERIFIED {VSA_PREDICATE_TYPE}")
    bad = _js_verify(sigstore_js, _flip_one_payload_byte(vsa, tmp_path / "bad.json"), pub)
    assert bad.returncode == 1 and bad.stdout.startswith("REJECTED"), bad.stdout + bad.stderr
