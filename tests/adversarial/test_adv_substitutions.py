"""Substitutions: whole files, bundles and keys swapped, added, removed or redirected.

Each attack is applied to a private copy of a signed delivery and checked as the
customer would (``attest check`` in process, default policy unless said), and
must FAIL naming the check that catches it.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from support.cli import assert_one_line_error
from support.delivery import check, copy_delivery, failed_checks, new_key, resign, sign, write_public_key

from uc_attest._internal.pack.strict_json import dumps_canonical
from uc_attest._internal.evaluate.settings import EvalSettings

pytestmark = pytest.mark.slow  # the shared signed delivery (tests/conftest.py)


def _statuses(results: dict[str, Any]) -> dict[str, str]:
    return {c["name"]: c["status"] for c in results["checks"]}


def _expect_fail(site: Any, tmp_path: Path, must_fail: set[str], policy: str | None = None, content_intact: bool = False) -> dict[str, Any]:
    """FAIL naming ``must_fail``; unless the content is intact (a trust failure), nothing is measured."""
    rc, out, err, results = check(site, tmp_path / "r.json", policy=policy)
    assert "Traceback" not in out + err and "internal error" not in err, err
    assert rc == 1, (rc, out, err)
    assert out.strip().splitlines()[-1] == "CHECK: FAIL", out
    assert results is not None and results["verdict"] == "FAIL"
    assert must_fail <= failed_checks(results), (must_fail, _statuses(results))
    if not content_intact:
        assert _statuses(results)["perplexity_match"] in ("SKIP", "FAIL")
    return results


def test_untouched_delivery_passes(site: Any, tmp_path: Path) -> None:
    rc, out, err, results = check(site, tmp_path / "r.json")
    assert rc == 0, out + err
    assert out.strip().splitlines()[-1] == "CHECK: PASS", out
    assert set(_statuses(results).values()) == {"PASS"}


def test_shards_swapped(site: Any, tmp_path: Path) -> None:
    shards = sorted(site.pack.glob("*.safetensors"))
    assert len(shards) >= 2
    a, b = shards[0], shards[1]
    tmp = a.with_name("swap.tmp")
    os.replace(a, tmp)
    os.replace(b, a)
    os.replace(tmp, b)
    _expect_fail(site, tmp_path, {"pack_files", "pack_structure"})


def test_a_file_from_another_pack(site: Any, other_delivery_root: tuple[Path, Any], tmp_path: Path) -> None:
    other = other_delivery_root[0] / "pack"
    codec = next(site.pack.glob("codec-*.safetensors"))
    shutil.copyfile(other / codec.name, codec)
    _expect_fail(site, tmp_path, {"pack_files", "pack_structure"})


def test_the_whole_pack_of_another_model(site: Any, other_delivery_root: tuple[Path, Any], tmp_path: Path) -> None:
    shutil.rmtree(site.pack)
    shutil.copytree(other_delivery_root[0] / "pack", site.pack)
    _expect_fail(site, tmp_path, {"pack_files", "weights_bit_exact"})


def test_bundle_of_another_pack_replayed_same_vendor_key(site: Any, vendor_key: Any, other_delivery_root: tuple[Path, Any], tmp_path: Path) -> None:
    """The vendor signed two packs with one key; the bundle of the other one is delivered with this pack."""
    other = copy_delivery(other_delivery_root[0], tmp_path / "other")
    bundle, tokens = sign(other.pack, vendor_key, tmp_path / "other", name="resigned")
    shutil.copyfile(bundle, site.bundle)
    shutil.copyfile(tokens, site.tokens)
    _expect_fail(site, tmp_path, {"pack_files", "weights_bit_exact"})


def test_bundle_of_another_vendor_replayed(site: Any, other_delivery_root: tuple[Path, Any], tmp_path: Path) -> None:
    shutil.copyfile(other_delivery_root[0] / "pack.sigstore.json", site.bundle)
    shutil.copyfile(other_delivery_root[0] / "pack.eval-tokens.safetensors", site.tokens)
    results = _expect_fail(site, tmp_path, {"signature"})
    assert "KeyMismatch" in next(c for c in results["checks"] if c["name"] == "signature")["summary"]


def test_bundle_resigned_with_an_untrusted_key(site: Any, tmp_path: Path) -> None:
    def better(statement: dict[str, Any]) -> None:
        statement["predicate"]["measurement"]["pack"]["perplexity"] = 1.0

    resign(site.bundle, new_key(), edit=better)
    _expect_fail(site, tmp_path, {"signature"})


def test_bundle_resigned_with_an_untrusted_key_claiming_the_vendors_hint(site: Any, tmp_path: Path) -> None:
    from uc_attest._internal.attest.keys import fingerprint, load_public_key

    resign(site.bundle, new_key(), hint=fingerprint(load_public_key(site.key)))
    results = _expect_fail(site, tmp_path, {"signature"})
    assert "SignatureError" in next(c for c in results["checks"] if c["name"] == "signature")["summary"]


def test_customer_given_an_attackers_public_key_is_out_of_scope_but_a_pinned_policy_catches_it(site: Any, vendor_key: Any, tmp_path: Path) -> None:
    """If the attacker also swaps vendor.pub in transit, only a policy pinning the vendor's fingerprint helps."""
    from uc_attest._internal.attest.keys import fingerprint

    attacker = new_key()
    resign(site.bundle, attacker)
    write_public_key(attacker, site.key)
    policy = tmp_path / "pinned.toml"
    policy.write_text(f'version = 1\nname = "pinned"\n[signer]\nkey_fingerprints = ["{fingerprint(vendor_key.public_key())}"]\n')
    _expect_fail(site, tmp_path, {"signer_trust"}, policy=str(policy), content_intact=True)


def test_an_extra_file(site: Any, tmp_path: Path) -> None:
    (site.pack / "extra.json").write_text("{}")
    results = _expect_fail(site, tmp_path, {"pack_files", "pack_structure"})
    assert next(f for f in results["files"] if f["path"] == "extra.json")["status"] == "FAIL"


def test_an_extra_hidden_file_and_directory(site: Any, tmp_path: Path) -> None:
    (site.pack / ".hidden").write_text("x")
    (site.pack / "sub").mkdir()
    (site.pack / "sub" / "x.safetensors").write_bytes(b"\0" * 8)
    _expect_fail(site, tmp_path, {"pack_files", "pack_structure"})


def test_a_missing_file(site: Any, tmp_path: Path) -> None:
    (site.pack / "tokenizer.json").unlink()
    _expect_fail(site, tmp_path, {"pack_files", "pack_structure"})


def test_a_missing_token_file_fails_the_eval_tokens_check(site: Any, tmp_path: Path) -> None:
    """The signed tokens are evidence the check judges: missing, they are a FAIL of their row (exit 1, results
    written), the measurement that needs them is skipped, and everything else is still judged."""
    site.tokens.unlink()
    rc, out, err, results = check(site, tmp_path / "r.json")
    assert rc == 1 and "Traceback" not in err, (out, err)
    assert results is not None and failed_checks(results) == {"eval_tokens"}
    assert {c["name"]: c["status"] for c in results["checks"]}["perplexity_match"] == "SKIP"
    assert results["verdict"] == "FAIL"


def test_a_token_file_of_another_delivery(site: Any, other_delivery_root: tuple[Path, Any], tmp_path: Path) -> None:
    other_tokens = other_delivery_root[0] / "pack.eval-tokens.safetensors"
    assert other_tokens.read_bytes() != site.tokens.read_bytes()  # the premise: another delivery's tokens differ
    shutil.copyfile(other_tokens, site.tokens)
    _expect_fail(site, tmp_path, {"eval_tokens"})


def test_a_renamed_tensor(site: Any, tmp_path: Path) -> None:
    """Renamed in the shard and in the manifest, the manifest re-sealed: consistent, but not what was signed."""
    import hashlib

    from safetensors.torch import load, save

    manifest = json.loads((site.pack / "ucpack.json").read_bytes())
    entry = next(t for t in manifest["tensors"] if t["kind"] == "passthrough" and "norm" in t["name"])
    shard = site.pack / entry["storage"]["file"]
    tensors = load(shard.read_bytes())
    new_name = entry["name"].replace("norm", "nrm")
    tensors[new_name] = tensors.pop(entry["storage"]["key"])
    data = save(tensors)
    shard.write_bytes(data)
    entry["name"] = entry["storage"]["key"] = new_name
    manifest["tensors"].sort(key=lambda t: t["name"])
    f = next(f for f in manifest["files"] if f["path"] == entry["storage"]["file"])
    f["size"], f["sha256"] = len(data), hashlib.sha256(data).hexdigest()
    (site.pack / "ucpack.json").write_bytes(dumps_canonical(manifest))
    results = _expect_fail(site, tmp_path, {"pack_files", "weights_bit_exact"})
    bad = {t["name"] for t in results["reconstruction"]["tensors"] if t["status"] == "FAIL"}
    assert {entry["name"], new_name.replace("nrm", "norm")} <= bad


def test_an_expired_attestation(delivery_root: tuple[Path, Any], tmp_path: Path) -> None:
    from uc_attest._internal.attest.trust import KeyAnchor
    from uc_attest._internal.check.run import CheckInputs, run_check
    from uc_attest._internal.policy import load_policy

    site = copy_delivery(delivery_root[0], tmp_path / "site")
    later = datetime.now(timezone.utc) + timedelta(days=366)
    outcome = run_check(CheckInputs(pack=site.pack, bundle=site.bundle, tokens=site.tokens, trust=KeyAnchor(site.key), policy=load_policy(None), now=later,
                                    evaluation=EvalSettings(progress=False)))  # fmt: skip
    statuses = {c.name: c.status.value for c in outcome.results.checks}
    assert outcome.results.verdict.value == "FAIL"
    assert statuses["attestation_age"] == "FAIL" and statuses["signature"] == "PASS", statuses


def test_an_attestation_from_the_future(delivery_root: tuple[Path, Any], tmp_path: Path) -> None:
    from uc_attest._internal.attest.trust import KeyAnchor
    from uc_attest._internal.check.run import CheckInputs, run_check
    from uc_attest._internal.policy import load_policy

    site = copy_delivery(delivery_root[0], tmp_path / "site")
    earlier = datetime.now(timezone.utc) - timedelta(days=2)
    outcome = run_check(CheckInputs(pack=site.pack, bundle=site.bundle, tokens=site.tokens, trust=KeyAnchor(site.key), policy=load_policy(None), now=earlier,
                                    evaluation=EvalSettings(progress=False)))  # fmt: skip
    assert {c.name: c.status.value for c in outcome.results.checks}["attestation_age"] == "FAIL"


def test_a_revoked_key(site: Any, vendor_key: Any, tmp_path: Path) -> None:
    from uc_attest._internal.attest.keys import fingerprint

    policy = tmp_path / "revoked.toml"
    policy.write_text(f'version = 1\nname = "revoked"\n[signer]\nrevoked_key_fingerprints = ["{fingerprint(vendor_key.public_key())}"]\n')
    results = _expect_fail(site, tmp_path, {"signer_trust"}, policy=str(policy), content_intact=True)
    assert "revoked" in next(c for c in results["checks"] if c["name"] == "signer_trust")["summary"]


def test_a_symlink_swapped_in_for_a_file(site: Any, tmp_path: Path) -> None:
    """Same bytes, but through a link: a pack holds regular files only."""
    target = tmp_path / "outside-config.json"
    shutil.copyfile(site.pack / "config.json", target)
    (site.pack / "config.json").unlink()
    (site.pack / "config.json").symlink_to(target)
    _expect_fail(site, tmp_path, {"pack_files", "pack_structure"})


def test_a_symlink_swapped_in_for_a_shard(site: Any, tmp_path: Path) -> None:
    shard = next(site.pack.glob("codec-*.safetensors"))
    target = tmp_path / "outside.safetensors"
    shutil.copyfile(shard, target)
    shard.unlink()
    shard.symlink_to(target)
    _expect_fail(site, tmp_path, {"pack_files", "pack_structure"})


def test_a_symlink_swapped_in_for_the_manifest(site: Any, tmp_path: Path) -> None:
    target = tmp_path / "outside.json"
    shutil.copyfile(site.pack / "ucpack.json", target)
    (site.pack / "ucpack.json").unlink()
    (site.pack / "ucpack.json").symlink_to(target)
    rc, out, err, results = check(site, tmp_path / "r.json")
    assert_one_line_error(rc, err, (2,))  # a manifest that is not a regular file is no pack: nothing is judged from it
    assert "ucpack.json" in err and results is None, err


def test_a_symlinked_directory_inside_the_pack(site: Any, tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (site.pack / "more").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    _expect_fail(site, tmp_path, {"pack_files", "pack_structure"})


def test_a_manifest_pointing_outside_the_pack(site: Any, tmp_path: Path) -> None:
    manifest = json.loads((site.pack / "ucpack.json").read_bytes())
    entry = next(f for f in manifest["files"] if f["path"] == "tokenizer.json")
    shutil.copyfile(site.pack / "tokenizer.json", site.pack.parent / "tokenizer.json")
    entry["path"] = "../tokenizer.json"
    (site.pack / "ucpack.json").write_bytes(dumps_canonical(manifest))
    _expect_fail(site, tmp_path, {"pack_files", "pack_structure"})


def test_a_signed_statement_naming_a_path_outside_the_pack(site: Any, vendor_key: Any, tmp_path: Path) -> None:
    """Even the vendor's own key cannot make the check read outside the pack: such a subject is refused."""

    def outside(statement: dict[str, Any]) -> None:
        statement["subject"].append({"name": "pack/../../etc/passwd", "digest": {"sha256": "0" * 64}})

    resign(site.bundle, vendor_key, edit=outside)
    rc, out, err, results = check(site, tmp_path / "r.json")
    assert "Traceback" not in err and "internal error" not in err, err
    assert rc == 1, out + err
    assert failed_checks(results) & {"signature", "pack_files"}, _statuses(results)
