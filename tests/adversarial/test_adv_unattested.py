"""``weights.allow_unattested_files``: one rule for files nobody signed, shared by pack_files and pack_structure.

The rule: a regular file (or a directory) in the pack that neither the manifest
lists nor the signature covers is *tolerated* under a policy that allows it (it
is reported and never read or loaded) and fails both checks otherwise. Symlinks
and FIFOs, sockets or devices fail either way, and so does every listed file
that differs from its signed hash. Before this, the development policy's
``pack_files`` said "tolerated" while the always-required ``pack_structure``
failed on the same file, so the option had no effect.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from support.delivery import check, failed_checks

pytestmark = pytest.mark.slow  # the shared signed delivery (tests/conftest.py)


def _allowing_policy(tmp_path: Path) -> Path:
    """The default policy (perplexity re-measured, bit-exact) with unattested files allowed."""
    from uc_attest._internal.policy.resources import shipped_policy_path

    text = shipped_policy_path("default").read_text(encoding="utf-8")
    path = tmp_path / "allow.toml"
    path.write_text(text.replace("allow_unattested_files = false", "allow_unattested_files = true"), encoding="utf-8")
    return path


def _statuses(results: dict[str, Any]) -> dict[str, str]:
    return {c["name"]: c["status"] for c in results["checks"]}


@pytest.mark.parametrize("where", ["README.txt", "notes/extra.txt"])
def test_an_unsigned_file_is_tolerated_by_both_checks_when_the_policy_allows_it(site: Any, tmp_path: Path, where: str) -> None:
    extra = site.pack / where
    extra.parent.mkdir(exist_ok=True)
    extra.write_text("delivered by the integrator, not signed\n")
    for policy in ("development", str(_allowing_policy(tmp_path))):
        rc, _out, err, results = check(site, tmp_path / "r.json", policy=policy)
        assert rc == 0 and results is not None, err
        statuses = _statuses(results)
        assert statuses["pack_files"] == statuses["pack_structure"] == "PASS", results["checks"]
        assert results["verdict"] == "PASS"
        structure = next(c for c in results["checks"] if c["name"] == "pack_structure")
        assert "tolerated" in structure["summary"]
    # the same file under the default policy fails both checks
    rc, _out, _err, results = check(site, tmp_path / "r.json")
    assert rc == 1 and {"pack_files", "pack_structure"} <= failed_checks(results)


def test_a_tolerated_extra_file_does_not_hide_a_tampered_signed_file(site: Any, tmp_path: Path) -> None:
    (site.pack / "README.txt").write_text("unsigned\n")
    config = site.pack / "config.json"
    config.write_bytes(config.read_bytes().replace(b"{", b"{ ", 1))
    rc, _out, _err, results = check(site, tmp_path / "r.json", policy=str(_allowing_policy(tmp_path)))
    assert rc == 1 and {"pack_files", "pack_structure"} <= failed_checks(results)


def test_special_files_and_symlinks_are_never_tolerated(site: Any, tmp_path: Path) -> None:
    os.mkfifo(site.pack / "pipe")
    rc, _out, _err, results = check(site, tmp_path / "r.json", policy=str(_allowing_policy(tmp_path)))
    assert rc == 1 and {"pack_files", "pack_structure"} <= failed_checks(results)
    (site.pack / "pipe").unlink()
    (site.pack / "link.json").symlink_to(site.pack / "config.json")
    rc, _out, _err, results = check(site, tmp_path / "r.json", policy=str(_allowing_policy(tmp_path)))
    assert rc == 1 and {"pack_files", "pack_structure"} <= failed_checks(results)
