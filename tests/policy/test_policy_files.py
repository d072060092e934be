"""Policy files: the shipped ones load, bad ones fail in one line, every field is documented."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from uc_attest._internal.errors import UnreadableInputError, UsageError
from uc_attest._internal.policy import (
    Policy,
    load_policy,
    parse_policy,
    policies_dir,
    resolve_policy_path,
    shipped_policy_names,
)
from uc_attest._internal.policy.describe import describe_policy
from uc_attest._internal.policy.model import normalize_fingerprint

REPO = Path(__file__).resolve().parents[2]
FP = "ab" * 32

MINIMAL = b'version = 1\nname = "mine"\n'


def test_shipped_policies_are_the_repository_folder_and_all_load() -> None:
    assert policies_dir().resolve() == (REPO / "policies").resolve()
    assert {"default", "strict", "development"} <= set(shipped_policy_names())
    for name in shipped_policy_names():
        loaded = load_policy(name)
        assert loaded.policy.name == name
        assert loaded.sha256 == hashlib.sha256((REPO / "policies" / f"{name}.toml").read_bytes()).hexdigest()


def test_no_policy_means_the_shipped_default() -> None:
    assert resolve_policy_path(None) == policies_dir() / "default.toml"
    loaded = load_policy(None)
    assert loaded.policy.name == "default"
    assert "shipped" in loaded.source


def test_strict_demands_exactness_ratio_and_age() -> None:
    p = load_policy("strict").policy
    assert p.weights.require_bit_exact
    assert p.perplexity.exact and p.perplexity.remeasure and p.perplexity.required
    assert p.perplexity.max_ratio_to_baseline is not None
    assert p.attestation.max_age_days is not None


def test_default_tolerates_small_drift_and_development_is_lenient() -> None:
    default = load_policy("default").policy
    assert default.weights.require_bit_exact and 0 < default.perplexity.relative_tolerance < 0.05
    dev = load_policy("development").policy
    assert not dev.perplexity.remeasure and not dev.weights.require_bit_exact and dev.attestation.max_age_days is None


def test_digest_is_over_the_exact_bytes(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_bytes(MINIMAL)
    a = load_policy(path)
    path.write_bytes(MINIMAL + b"# a comment changes the digest\n")
    b = load_policy(path)
    assert a.policy == b.policy
    assert a.sha256 == hashlib.sha256(MINIMAL).hexdigest() != b.sha256
    assert a.source == str(path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (b'version = 1\nname = "x"\nmax_age = 3\n', "unknown key 'max_age'"),
        (b'version = 1\nname = "x"\n[perplexity]\ntolerance = 0.1\n', "unknown key 'perplexity.tolerance'"),
        (b'version = 1\nname = "x"\n[extra]\n', "unknown key 'extra'"),
        (b'version = 1\nname = "x"\n[perplexity]\nrelative_tolerance = "0.1"\n', "perplexity.relative_tolerance"),
        (b'version = 1\nname = "x"\n[weights]\nrequire_bit_exact = 1\n', "weights.require_bit_exact"),
        (b'version = 1\nname = "x"\n[perplexity]\nrelative_tolerance = -0.1\n', "perplexity.relative_tolerance"),
        (b'version = 1\nname = "x"\n[perplexity]\nmax_ratio_to_baseline = 0.9\n', "perplexity.max_ratio_to_baseline"),
        (b'version = 1\nname = "x"\n[attestation]\nmax_age_days = 0\n', "attestation.max_age_days"),
        (b'version = 2\nname = "x"\n', "version"),
        (b'name = "x"\n', "missing key 'version'"),
        (b'version = 1\nname = "x"\n[signer]\nkey_fingerprints = ["abc"]\n', "signer.key_fingerprints.0"),
        (b'version = 1\nname = "x"\n[signer]\nvalid_from = 2025-01-01T00:00:00\n', "signer.valid_from"),
        (b'version = 1\nname = "x"\n[signer]\nvalid_from = 2025-01-02T00:00:00Z\nvalid_until = 2025-01-01T00:00:00Z\n', "valid_from must be earlier"),
        (b'version = 1\nname = "x"\n[signer]\nallow_key = false\nallow_keyless = false\n', "cannot both be false"),
        (f'version = 1\nname = "x"\n[signer]\nkey_fingerprints = ["{FP}"]\nrevoked_key_fingerprints = ["{FP}"]\n'.encode(), "both allowed and revoked"),
    ],
)
def test_bad_policies_fail_with_one_line(text: bytes, expected: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_policy(text, "p.toml")
    message = str(info.value)
    assert expected in message
    assert "\n" not in message and message.startswith("policy p.toml: ")
    assert info.value.exit_code == 2


def test_unreadable_policies(tmp_path: Path) -> None:
    with pytest.raises(UnreadableInputError, match="not valid TOML"):
        parse_policy(b"version = = 1", "p.toml")
    with pytest.raises(UnreadableInputError, match="not UTF-8"):
        parse_policy(b"\xff\xfe", "p.toml")
    with pytest.raises(UsageError, match="not found"):
        load_policy(tmp_path / "absent.toml")
    (tmp_path / "dir.toml").mkdir()
    with pytest.raises(UsageError, match="directory"):
        load_policy(tmp_path / "dir.toml")
    with pytest.raises(UsageError, match="unknown policy name 'nosuch'"):
        load_policy("nosuch")


def test_fingerprints_are_normalised() -> None:
    upper = "sha256:" + FP.upper()
    assert normalize_fingerprint(upper) == FP
    text = f'version = 1\nname = "x"\n[signer]\nkey_fingerprints = ["{upper}"]\n'.encode()
    assert parse_policy(text, "p").policy.signer.key_fingerprints == [FP]


def test_keyless_identity_lists_and_window() -> None:
    text = b"""version = 1
name = "keyless-only"
[signer]
allow_key = false
identities = ["release@vendor.example"]
issuers = ["https://accounts.google.com"]
valid_from = 2025-01-01T00:00:00Z
valid_until = 2026-01-01T00:00:00+01:00
"""
    signer = parse_policy(text, "p").policy.signer
    assert signer.identities == ["release@vendor.example"] and not signer.allow_key
    assert signer.valid_until is not None and signer.valid_until.utcoffset() is not None


def _field_paths(model: type[BaseModel], prefix: str = "") -> list[str]:
    paths = []
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            paths += _field_paths(annotation, f"{prefix}{name}.")
        else:
            paths.append(prefix + name)
    return paths


def test_every_policy_field_is_documented() -> None:
    doc = (REPO / "docs" / "POLICY.md").read_text(encoding="utf-8")
    missing = []
    for path in _field_paths(Policy):
        section, _, key = path.rpartition(".")
        # A field is documented by a table row `key` under its [section] heading (or at top level).
        if not re.search(rf"^\|\s*`{re.escape(key)}`", doc, re.MULTILINE):
            missing.append(path)
        if section and f"[{section}]" not in doc:
            missing.append(f"[{section}]")
    assert not missing, f"undocumented policy fields: {missing}"


def test_every_shipped_policy_can_be_described() -> None:
    for name in shipped_policy_names():
        lines = describe_policy(load_policy(name).policy)
        assert len(lines) >= 5 and all(line.endswith(".") for line in lines)
    strict = " ".join(describe_policy(load_policy("strict").policy))
    assert "exactly" in strict and "90 days" in strict


def test_the_documented_example_is_a_valid_policy() -> None:
    doc = (REPO / "docs" / "POLICY.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```toml\n(.*?)```", doc, re.DOTALL)
    assert blocks
    for block in blocks:
        assert parse_policy(block.encode("utf-8"), "docs/POLICY.md").policy.version == 1
