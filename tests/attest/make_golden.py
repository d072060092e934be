"""Write the golden attestation files of this version (run once per new format version, by hand).

    PYTHONPATH=tests .venv/bin/python tests/attest/make_golden.py tests/golden/attest/v1

Golden files are never regenerated in place: every later version of uc_attest
must still verify what this version wrote, so the script refuses to overwrite.
The keys written here are test keys, published on purpose; never sign anything
real with them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from support.fake_sigstore import FakeSigstore
from support.statements import make_statement

from uc_attest._internal.atomic import write_bytes_atomic  # noqa: E402
from uc_attest._internal.attest.keys import Algorithm, generate_private_key, private_key_pem, public_key_pem  # noqa: E402
from uc_attest._internal.attest.signing import sign_statement  # noqa: E402

GOLDEN_PASSPHRASE = b"golden-test-passphrase"
KEYLESS_IDENTITY = "vendor@example.com"
KEYLESS_ISSUER = "https://accounts.example.com"


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, bytes] = {}
    statement = make_statement()
    files["statement.json"] = statement.to_payload()
    for algorithm in Algorithm:
        key = generate_private_key(algorithm)
        name = algorithm.value
        files[f"{name}.key"] = private_key_pem(key, None)
        files[f"{name}.pub"] = public_key_pem(key.public_key())
        files[f"{name}.sigstore.json"] = sign_statement(statement, key)
    encrypted = generate_private_key(Algorithm.P256)
    files["p256-encrypted.key"] = private_key_pem(encrypted, GOLDEN_PASSPHRASE)
    files["p256-encrypted.pub"] = public_key_pem(encrypted.public_key())
    fake = FakeSigstore()
    files["keyless-fake-ca.trusted_root.json"] = (json.dumps(fake.trusted_root(), indent=2) + "\n").encode()
    files["keyless-fake-ca.sigstore.json"] = fake.sign(statement.to_payload(), KEYLESS_IDENTITY, KEYLESS_ISSUER)
    for name in files:
        if (out / name).exists():
            raise SystemExit(f"{out / name} exists: golden files are never overwritten")
    for name, data in files.items():
        write_bytes_atomic(out / name, data, mode=0o600 if name.endswith(".key") else 0o644)
        print(f"wrote {out / name}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
