"""The refusals ``attest check`` and ``attest probe`` share (cli/verdict_options.py): before any work, nothing written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from uc_attest._internal.cli.verdict_options import prepare_verdict_outputs
from uc_attest._internal.errors import UsageError
from uc_attest._internal.policy import load_policy


def _prepare(tmp_path: Path, policy: str = "default", **given: Any) -> Any:
    pack = tmp_path / "pack"
    pack.mkdir(exist_ok=True)
    bundle = tmp_path / "pack.sigstore.json"
    bundle.write_text("{}")
    options: dict[str, Any] = dict(pack=pack, policy=load_policy(policy), inputs=[bundle, None], report_path=None, json_path=None,
                                   vsa_out=None, sign_key=None, sign_cert=None, sign_sigstore=False, sign_staging=False,
                                   allow_open_key_file=False)  # fmt: skip
    options.update(given)
    return prepare_verdict_outputs(**options)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ({"json_path": "pack.sigstore.json"}, "would overwrite an input"),
        ({"json_path": "pack/results.json"}, "would overwrite an input"),
        ({"json_path": "r.json", "report_path": "r.json"}, "cannot be the same file"),
        ({"json_path": "r.json", "vsa_out": "missing/v.json"}, "in existing directories"),
        ({"json_path": "r.json", "vsa_out": "r.json"}, "must be different files"),
    ],
)
def test_outputs_that_cannot_be_written_are_refused_first(tmp_path: Path, case: dict[str, str], message: str) -> None:
    """Misuse, for check and probe alike: an output over an input, inside the pack, twice named, or in no directory."""
    with pytest.raises(UsageError, match=message):
        _prepare(tmp_path, **{k: tmp_path / v for k, v in case.items()})
    assert not (tmp_path / "r.json").exists()


def test_an_unsigned_verdict_under_a_policy_that_requires_a_signature_is_refused(tmp_path: Path) -> None:
    policy = tmp_path / "signed.toml"
    policy.write_text('version = 1\nname = "signed"\n[verdict]\nrequire_signature = true\n')
    with pytest.raises(UsageError, match="requires a signed verdict"):
        _prepare(tmp_path, policy=str(policy), json_path=tmp_path / "r.json")


def test_outputs_that_can_be_written_are_returned_unsigned(tmp_path: Path) -> None:
    outputs = _prepare(tmp_path, json_path=tmp_path / "r.json", report_path=tmp_path / "r.pdf")
    assert (outputs.json, outputs.report, outputs.vsa) == (tmp_path / "r.json", tmp_path / "r.pdf", None)
    assert not outputs.signing.enabled
