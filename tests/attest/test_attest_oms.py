"""``attest sign --oms``: an OpenSSF model signature that the PyPI ``model_signing`` command accepts, and refuses after a change."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from uc_attest._internal.attest.keys import Algorithm, write_keypair
from uc_attest._internal.attest.oms import oms_file_digests, verify_oms
from uc_attest._internal.attest.paths import default_bundle_path, oms_path_for_bundle
from uc_attest._internal.attest.subjects import split_subjects
from uc_attest._internal.attest.verify import verify_bundle
from uc_attest._internal.attest.trust import KeyAnchor

pytestmark = pytest.mark.slow  # the shared signed delivery (tests/conftest.py)
# model-signing (the oms extra) is installed by make venv and CI: a missing library fails these tests, it never skips them

MODEL_SIGNING = Path(sys.executable).with_name("model_signing")


def _model_signing_verify(pack: Path, signature: Path, public_key: Path) -> subprocess.CompletedProcess[str]:
    """The peer's own command line, as a user of OpenSSF model signing runs it."""
    cmd = [str(MODEL_SIGNING), "verify", "key", str(pack), "--signature", str(signature), "--public_key", str(public_key)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture()
def oms_signed(attest_cli, tiny_pack: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    key, pub, _ = write_keypair(tmp_path / "vendor", passphrase=b"pw")
    r = attest_cli("sign", tiny_pack, "--key", key, "--seq-len", "16", "--max-windows", "1", "--oms", "--quiet",
                   env={"UC_ATTEST_KEY_PASSPHRASE": "pw"})  # fmt: skip
    assert r.rc == 0, r.err
    bundle = default_bundle_path(tiny_pack)
    signature = oms_path_for_bundle(bundle)
    assert signature.name == "pack.model.sig" and f"wrote {signature}" in r.out
    return tiny_pack, bundle, signature, pub


def test_model_signing_accepts_the_pack_and_refuses_a_changed_byte(oms_signed) -> None:  # type: ignore[no-untyped-def]
    pack, _, signature, pub = oms_signed
    accepted = _model_signing_verify(pack, signature, pub)
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    shard = pack / "codec-00001.safetensors"
    data = bytearray(shard.read_bytes())
    data[-5] ^= 0x01
    shard.write_bytes(data)
    refused = _model_signing_verify(pack, signature, pub)
    assert refused.returncode != 0
    assert "codec-00001.safetensors" in refused.stdout + refused.stderr


def test_oms_covers_exactly_the_attested_files(oms_signed) -> None:  # type: ignore[no-untyped-def]
    pack, bundle, signature, pub = oms_signed
    attested, _ = split_subjects(verify_bundle(bundle, KeyAnchor(pub)).statement)
    assert oms_file_digests(signature.read_bytes()) == attested
    assert "ucpack.json" in attested
    status = verify_oms(pack, signature, pub, attested)
    assert status.status == "valid", status.detail


def test_advisory_status_after_tampering(oms_signed, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    pack, bundle, signature, pub = oms_signed
    attested, _ = split_subjects(verify_bundle(bundle, KeyAnchor(pub)).statement)
    original = (pack / "config.json").read_bytes()
    (pack / "config.json").write_bytes(original.replace(b"silu", b"gelu"))
    assert verify_oms(pack, signature, pub, attested).status == "invalid"
    (pack / "config.json").write_bytes(original)
    other = verify_oms(pack, signature, pub, {**attested, "config.json": "0" * 64})  # valid OMS, but over other files
    assert other.status == "invalid" and "other files" in other.detail
    _, other_pub, _ = write_keypair(tmp_path / "other")
    assert verify_oms(pack, signature, other_pub, attested).status == "invalid"
    forged = json.loads(signature.read_text())
    forged["dsseEnvelope"]["signatures"][0]["sig"] = forged["dsseEnvelope"]["signatures"][0]["sig"][::-1]
    signature.write_text(json.dumps(forged))
    assert verify_oms(pack, signature, pub, attested).status == "invalid"
    signature.unlink()
    assert verify_oms(pack, signature, pub, attested).status == "absent"
    signature.write_text("{}")
    assert verify_oms(pack, signature, None, attested).status == "not-checked"


def test_oms_refuses_an_ed25519_key_before_any_work(attest_cli, tiny_pack: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    key, _, _ = write_keypair(tmp_path / "ed", algorithm=Algorithm.ED25519)
    r = attest_cli("sign", tiny_pack, "--key", key, "--seq-len", "16", "--max-windows", "1", "--oms", "--quiet")
    assert r.rc == 2 and "P-256" in r.err and len(r.err.strip().splitlines()) == 1
    assert not default_bundle_path(tiny_pack).exists()


def test_the_advisory_row_of_attest_check(oms_signed) -> None:  # type: ignore[no-untyped-def]
    from uc_attest._internal.attest.subjects import AttestedFiles
    from uc_attest._internal.check.deploy_checks import oms_rows
    from uc_attest._internal.check.results import CheckStatus

    pack, bundle, signature, pub = oms_signed
    verified = AttestedFiles.of(verify_bundle(bundle, KeyAnchor(pub)).statement).files
    [row] = oms_rows(pack, bundle, pub, verified)
    assert (row.name, row.status, row.required) == ("oms_signature", CheckStatus.PASS, False)
    assert oms_rows(pack, bundle, None, verified)[0].status is CheckStatus.SKIP  # keyless trust: not checked
    assert oms_rows(pack, bundle, pub, None)[0].status is CheckStatus.SKIP  # the acceptance signature failed
    (pack / "tokenizer.json").write_bytes((pack / "tokenizer.json").read_bytes() + b" ")
    [row] = oms_rows(pack, bundle, pub, verified)
    assert row.status is CheckStatus.FAIL and not row.required and "invalid" in row.summary
    signature.unlink()
    assert oms_rows(pack, bundle, pub, verified) == []  # no OMS signature: no row
