"""Interoperability: sigstore-js (npm ``sigstore``) verifies our key-mode bundles offline.

The npm package is installed once into ``~/.cache/uc_attest/sigstore-js/sigstore-<version>``
(override the folder with ``UC_ATTEST_SIGSTORE_JS_CACHE``, the version with
``UC_ATTEST_SIGSTORE_JS_VERSION``); installing needs the npm registry, verifying
needs nothing: the JS side blocks every socket before it starts. Skipped only
when node or npm is not installed.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from uc_attest.attest.acceptance import SignOptions, sign_pack
from uc_attest.attest.keys import Algorithm, generate_private_key, public_key_pem

HERE = Path(__file__).parent
SCRIPT = HERE / "js" / "verify_key_bundle.js"
V1 = HERE.parent / "golden" / "attest" / "v1"
VERSION = os.environ.get("UC_ATTEST_SIGSTORE_JS_VERSION", "5.0.1")
CACHE_ROOT = Path(os.environ.get("UC_ATTEST_SIGSTORE_JS_CACHE", Path.home() / ".cache" / "uc_attest" / "sigstore-js"))


def _installed(folder: Path) -> bool:
    manifest = folder / "node_modules" / "sigstore" / "package.json"
    return manifest.is_file() and json.loads(manifest.read_text()).get("version") == VERSION


@pytest.fixture(scope="module")
def sigstore_js() -> tuple[str, Path]:
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        pytest.skip("node/npm not installed: sigstore-js interoperability not tested")
    target = CACHE_ROOT / f"sigstore-{VERSION}"
    if not _installed(target):
        CACHE_ROOT.mkdir(parents=True, exist_ok=True)
        tmp = CACHE_ROOT / f".install-{uuid.uuid4().hex}"
        tmp.mkdir()
        try:
            (tmp / "package.json").write_text(json.dumps({"name": "uc-attest-sigstore-js", "private": True}))
            subprocess.run(
                [npm, "install", "--no-audit", "--no-fund", "--loglevel=error", f"sigstore@{VERSION}"],
                cwd=tmp, check=True, capture_output=True, timeout=600,
            )  # fmt: skip
            if not _installed(target):
                shutil.rmtree(target, ignore_errors=True)
                os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return node, target / "node_modules" / "sigstore"


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


@pytest.mark.parametrize("algorithm", list(Algorithm))
def test_sigstore_js_verifies_attest_sign_bundle(sigstore_js, tiny_pack: Path, eval_text: Path, tmp_path: Path, algorithm: Algorithm) -> None:  # type: ignore[no-untyped-def]
    key = generate_private_key(algorithm)
    pub = tmp_path / "vendor.pub"
    pub.write_bytes(public_key_pem(key.public_key()))
    result = sign_pack(SignOptions(pack=tiny_pack, key=key, eval_text=eval_text, seq_len=16, max_windows=2, progress=False))

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
