"""Keys in hardware: ``attest sign`` and ``attest check --sign-key`` with a PKCS#11 key in SoftHSM2.

The token is created for the test in a temporary folder (SOFTHSM2_CONF), the
P-256 key generated inside it as sensitive and non-extractable. In CI
(``CI`` set) a missing SoftHSM2 is a failure, not a skip: .ci/run installs it.
"""

from __future__ import annotations

import os
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from support.cli import CliResult, run_cli

from uc_attest._internal.attest import KeyAnchor, verify_bundle
from uc_attest._internal.attest.keys import generate_private_key, public_key_pem
from uc_attest._internal.attest.pkcs11 import Pkcs11Uri, TokenPrivateKey
from uc_attest._internal.errors import UsageError
from uc_attest._internal.attest.errors import KeyMismatchError

pytestmark = pytest.mark.slow  # the shared signed delivery (tests/conftest.py)

MODULE_CANDIDATES = ["/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so", "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so"]
PIN = "246810"


def _module() -> str:
    found = next((m for m in MODULE_CANDIDATES if os.path.exists(m)), None)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("SoftHSM2 is not installed: .ci/run must install it (apt-get install softhsm2)")
        pytest.skip("SoftHSM2 not installed here (CI installs it)")
    return found


@pytest.fixture(scope="module")
def token(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A fresh SoftHSM2 token with one P-256 key pair labelled 'verdict'; returns the key's URI (without PIN)."""
    import pkcs11
    from pkcs11 import Attribute, KeyType
    from pkcs11.util.ec import encode_named_curve_parameters

    module = _module()
    softhsm_util = shutil.which("softhsm2-util")
    if softhsm_util is None:
        pytest.fail("softhsm2-util missing although the SoftHSM2 module is installed")
    root = tmp_path_factory.mktemp("softhsm")
    (root / "tokens").mkdir()
    conf = root / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {root / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    import subprocess

    subprocess.run([softhsm_util, "--init-token", "--free", "--label", "uc-attest-test", "--pin", PIN, "--so-pin", "13579"], check=True, capture_output=True)
    lib = pkcs11.lib(module)
    with lib.get_token(token_label="uc-attest-test").open(user_pin=PIN, rw=True) as session:
        params = session.create_domain_parameters(KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")}, local=True)
        params.generate_keypair(store=True, label="verdict")
    return f"pkcs11:token=uc-attest-test;object=verdict?module-path={module}"


def attest(*args: object, env: dict[str, str] | None = None) -> CliResult:
    return run_cli("attest", *args, env={"UC_ATTEST_PKCS11_PIN": PIN, **(env or {})})


def _token_key(uri: str) -> TokenPrivateKey:
    return TokenPrivateKey(Pkcs11Uri.parse(uri), PIN)


def test_token_key_signs_and_never_leaves_the_token(token: str) -> None:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = _token_key(token)
    signature = key.sign(b"message", ec.ECDSA(hashes.SHA256()))
    key.public_key().verify(signature, b"message", ec.ECDSA(hashes.SHA256()))
    with pytest.raises(UsageError, match="stays in the PKCS#11 token"):
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def test_attest_sign_with_a_token_key(token: str, tiny_pack: Path, eval_text: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "pack.sigstore.json"
    rc, out, err = attest("sign", tiny_pack, "--key", token, "--eval-text", eval_text, "--seq-len", "16", "--max-windows", "2", "-o", bundle, "--quiet")
    assert rc == 0, out + err
    pub = tmp_path / "token.pub"
    pub.write_bytes(public_key_pem(_token_key(token).public_key()))
    verified = verify_bundle(bundle, KeyAnchor(pub))
    assert verified.signer.key_fingerprint is not None
    other = tmp_path / "other.pub"
    other.write_bytes(public_key_pem(generate_private_key().public_key()))
    with pytest.raises(KeyMismatchError, match="not by the given key"):
        verify_bundle(bundle, KeyAnchor(other))


def test_attest_check_signs_the_verdict_with_a_token_key(token: str, tiny_pack: Path, eval_text: Path, tmp_path: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    bundle = tmp_path / "pack.sigstore.json"
    vendor = generate_private_key()
    (tmp_path / "vendor.key").write_bytes(vendor.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    os.chmod(tmp_path / "vendor.key", 0o600)
    (tmp_path / "vendor.pub").write_bytes(public_key_pem(vendor.public_key()))
    rc, out, err = attest("sign", tiny_pack, "--key", tmp_path / "vendor.key", "--eval-text", eval_text, "--seq-len", "16", "--max-windows", "2", "-o", bundle, "--quiet")
    assert rc == 0, out + err
    # The customer's PKI certifies the token's key (a CA key outside the token signs the certificate).
    token_public = _token_key(token).public_key()
    ca = generate_private_key()
    now = datetime.now(timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example Bank")])
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Example Bank CA")]))
        .public_key(token_public).serial_number(7).not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=30))
        .sign(ca, hashes.SHA256())
    )  # fmt: skip
    (tmp_path / "verdict.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "customer.pub").write_bytes(public_key_pem(token_public))
    rc, out, err = attest(
        "check", tiny_pack, "--bundle", bundle, "--key", tmp_path / "vendor.pub", "--policy", "development",
        "--json", tmp_path / "results.json", "--report", tmp_path / "report.pdf",
        "--sign-key", token, "--sign-cert", tmp_path / "verdict.crt", "--quiet",
    )  # fmt: skip
    assert rc == 0, out + err
    assert (tmp_path / "results.vsa.sigstore.json").is_file()
    rc, out, err = attest("verify-report", tmp_path / "report.pdf", "--key", tmp_path / "vendor.pub", "--customer-key", tmp_path / "customer.pub")
    assert rc == 0, out + err
    assert out.rstrip().endswith("REPORT: VERIFIED") and "O=Example Bank" in out


def test_bad_uris_and_pins_are_one_line_exit_2(token: str, tiny_pack: Path) -> None:
    for uri, expected in [
        ("pkcs11:token=uc-attest-test", "object="),
        (token.replace("object=verdict", "object=absent"), "no private key"),
        (token.replace("token=uc-attest-test", "token=absent"), "no PKCS#11 token"),
        ("pkcs11:object=x?module-path=/nonexistent/lib.so", "cannot load the PKCS#11 module"),
    ]:
        rc, _out, err = attest("sign", tiny_pack, "--key", uri, "--quiet")
        assert rc == 2 and expected in err and err.count("\n") == 1, (uri, err)
    rc, _out, err = attest("sign", tiny_pack, "--key", token, "--quiet", env={"UC_ATTEST_PKCS11_PIN": "000000"})
    assert rc == 2 and "wrong PIN" in err
