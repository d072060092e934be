"""``attest sign``: option combinations that cannot succeed are refused before any work; nothing is half-written;
no error echoes what may hold a PIN; an OMS refusal always says why.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import uc_attest._internal.attest.acceptance as acceptance
from uc_attest._internal.attest.key_reference import KeyReference
from uc_attest._internal.attest.keys import Algorithm, write_keypair
from uc_attest._internal.attest.oms import NEEDS_KEY_FILE, NEEDS_VENDOR_KEY, refusal_reason, verify_oms
from uc_attest._internal.attest.paths import default_bundle_path, oms_path_for_bundle, tokens_path_for_bundle
from uc_attest._internal.attest.pkcs11 import Pkcs11Uri
from uc_attest._internal.attest.subjects import AttestedFiles
from uc_attest._internal.attest.trust import KeyAnchor
from uc_attest._internal.attest.verify import verify_bundle
from uc_attest._internal.errors import UsageError, VerificationError

pytestmark = pytest.mark.slow

SECRET = "S3CRET-PIN-4711"


@pytest.fixture()
def no_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any refusal under test must come before the pack is even verified."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("attest sign started work")

    monkeypatch.setattr(acceptance, "_verify_pack", refuse)


def _outputs(pack: Path) -> list[Path]:
    bundle = default_bundle_path(pack)
    return [p for p in (bundle, tokens_path_for_bundle(bundle), oms_path_for_bundle(bundle)) if p.exists()]


@pytest.mark.parametrize(
    ("args", "why"),
    [
        (["--key", "pkcs11:object=vendor?module-path=/nonexistent/lib.so", "--oms"], NEEDS_KEY_FILE),
        (["--sigstore", "--oms"], NEEDS_VENDOR_KEY),
        (["--sigstore", "--key", "KEY"], "exactly one"),
        ([], "exactly one"),
        (["--key", "KEY", "--staging"], "--staging only applies"),
        (["--key", "KEY", "--baseline-mismatch-reason", "because"], "needs --baseline"),
    ],
)
def test_impossible_combinations_are_refused_before_any_work(attest_cli, tiny_pack: Path, tmp_path: Path, no_work: None,
                                                             args: list[str], why: str) -> None:  # type: ignore[no-untyped-def]  # fmt: skip
    key, _, _ = write_keypair(tmp_path / "vendor")
    args = [str(key) if a == "KEY" else a for a in args]
    result = attest_cli("sign", tiny_pack, *args, "--quiet", env={"UC_ATTEST_PKCS11_PIN": SECRET})
    assert result.rc == 2 and why in result.err and len(result.err.strip().splitlines()) == 1, result.err
    assert _outputs(tiny_pack) == []


def test_ed25519_with_oms_is_refused_before_the_passphrase_is_used_for_work(attest_cli, tiny_pack: Path, tmp_path: Path,
                                                                           no_work: None) -> None:  # type: ignore[no-untyped-def]  # fmt: skip
    key, _, _ = write_keypair(tmp_path / "vendor", algorithm=Algorithm.ED25519)
    result = attest_cli("sign", tiny_pack, "--key", key, "--oms", "--quiet")
    assert result.rc == 2 and "P-256" in result.err and _outputs(tiny_pack) == []


def test_a_failing_oms_signature_leaves_no_bundle_and_no_token_file(attest_cli, tiny_pack: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]  # fmt: skip
    import uc_attest._internal.attest.oms as oms

    def fails(*args: object, **kwargs: object) -> bytes:
        raise VerificationError("OpenSSF model signing failed: simulated")

    monkeypatch.setattr(oms, "oms_signature", fails)
    key, _, _ = write_keypair(tmp_path / "vendor")
    result = attest_cli("sign", tiny_pack, "--key", key, "--seq-len", "16", "--max-windows", "1", "--oms", "--quiet")
    assert result.rc == 1 and "simulated" in result.err
    assert _outputs(tiny_pack) == []


def test_oms_is_signed_over_the_attested_files_and_written_with_the_bundle(attest_cli, tiny_pack: Path, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]  # fmt: skip
    import uc_attest._internal.attest.verify as verify

    calls: list[object] = []
    real = verify.verify_bundle
    monkeypatch.setattr(verify, "verify_bundle", lambda *a, **k: calls.append(a) or real(*a, **k))
    key, pub, _ = write_keypair(tmp_path / "vendor")
    result = attest_cli("sign", tiny_pack, "--key", key, "--seq-len", "16", "--max-windows", "1", "--oms", "--quiet")
    assert result.rc == 0, result.err
    assert len(calls) == 1  # the in-memory check of the fresh bundle; the written bundle is not read back for OMS
    bundle = default_bundle_path(tiny_pack)
    attested = AttestedFiles.of(verify_bundle(bundle, KeyAnchor(pub)).statement).files
    assert verify_oms(tiny_pack, oms_path_for_bundle(bundle), pub, attested).status == "valid"


@pytest.mark.parametrize(
    "uri",
    [
        f"pkcs11:token=x;{SECRET}",
        f"pkcs11:{SECRET}=1;object=x",
        f"pkcs11:object=x?{SECRET}",
        f"pkcs11:object=x;pin-value={SECRET}",
        f"pkcs11:object=x?module-path=/nonexistent/lib.so;pin-value={SECRET}",
        f"pkcs11:token=t&pin-value={SECRET};object=x?module-path=/nonexistent/lib.so",
    ],
)
def test_no_error_echoes_what_may_hold_a_pin(attest_cli, tiny_pack: Path, no_work: None, uri: str) -> None:  # type: ignore[no-untyped-def]
    result = attest_cli("sign", tiny_pack, "--key", uri, "--quiet", env={"UC_ATTEST_PKCS11_PIN": "123456"})
    assert result.rc == 2 and len(result.err.strip().splitlines()) == 1, result.err
    assert SECRET not in result.err + result.out, result.err


def test_parsed_uris_and_key_references_do_not_show_the_pin() -> None:
    parsed = Pkcs11Uri.parse(f"pkcs11:object=x?pin-value={SECRET}")
    assert parsed.pin == SECRET and SECRET not in repr(parsed)
    assert SECRET not in repr(KeyReference(f"pkcs11:object=x?pin-value={SECRET}"))
    with pytest.raises(UsageError) as caught:
        Pkcs11Uri.parse(f"pkcs11:object=x;{SECRET}")
    assert SECRET not in str(caught.value)


def test_an_oms_refusal_always_has_a_reason(tiny_pack: Path, tmp_path: Path, attest_cli) -> None:  # type: ignore[no-untyped-def]
    from cryptography.exceptions import InvalidSignature

    assert refusal_reason(InvalidSignature()).strip() and refusal_reason(ValueError()).strip()
    assert refusal_reason(ValueError("  spaced\n out ")) == "spaced out"
    key, pub, _ = write_keypair(tmp_path / "vendor")
    _, other, _ = write_keypair(tmp_path / "other")
    assert attest_cli("sign", tiny_pack, "--key", key, "--seq-len", "16", "--max-windows", "1", "--oms", "--quiet").rc == 0
    bundle = default_bundle_path(tiny_pack)
    attested = AttestedFiles.of(verify_bundle(bundle, KeyAnchor(pub)).statement).files
    status = verify_oms(tiny_pack, oms_path_for_bundle(bundle), other, attested)
    assert status.status == "invalid" and status.detail.startswith("model_signing refuses it: ")
    assert status.detail.removeprefix("model_signing refuses it: ").strip()
