"""Two rows of ``attest check`` about deployment: the served directory (required) and the OMS signature (advisory).

* ``deployed`` (only with ``--deployed DIR``, then required): the directory a
  serving engine loads holds exactly the attested tensors, config and
  tokenizer (uc_attest._internal.pack.deployed), judged against the manifest whose
  SHA-256 the signed statement gives.
* ``oms_signature`` (advisory, never decides the verdict; present only when an
  OpenSSF model-signing signature lies beside the bundle, so that a delivery
  without one reads as before): whether it verifies with the vendor's key over
  exactly the attested files (uc_attest._internal.attest.oms).
"""

from __future__ import annotations

from collections.abc import Mapping
import os
import tempfile
from pathlib import Path
from typing import Any

from ..attest.oms import verify_oms
from ..attest.paths import oms_path_for_bundle
from ..attest.trust import KeyAnchor
from ..errors import UcError, VerificationError
from ..pack.deployed import verify_deployed
from ..pack.reader import Pack, open_pack
from .context import CheckContext
from .results import CheckResult, CheckStatus

DEPLOYED_TITLE = "The deployed model directory holds exactly the attested model"
OMS_TITLE = "OpenSSF model signature of the pack"
MAX_LISTED = 50


def deployed_check(pack_root: Path, directory: Path, attested_manifest_sha256: str | None,
                   attested_files: Mapping[str, str] | None = None, pack: Pack | None = None) -> CheckResult:  # fmt: skip
    """The required ``deployed`` row; ``attested_manifest_sha256`` is None when the signature did not verify.

    ``attested_files`` is the signed ``{pack path: sha256}`` (the pack's non-weight files in the directory must
    have exactly those digests); ``pack`` the pack the verification pass already opened, if it did.
    """
    def row(status: CheckStatus, summary: str, details: dict[str, Any] | None = None) -> CheckResult:
        return CheckResult(name="deployed", title=DEPLOYED_TITLE, status=status, required=True, summary=summary,
                           details={"directory": str(directory), **(details or {})})  # fmt: skip

    if attested_manifest_sha256 is None:
        return row(CheckStatus.SKIP, "Not checked: the signature did not verify, so there is no attested model to compare with.")
    try:
        pack = pack if pack is not None else open_pack(pack_root)
        if pack.manifest_sha256 != attested_manifest_sha256:
            return row(CheckStatus.FAIL, "The pack's manifest is not the attested one; the deployed directory cannot be judged against it.")
        report = verify_deployed(pack, directory, attested_files)
    except UcError as exc:
        return row(CheckStatus.FAIL, f"{exc}.")
    details = {"tensors_expected": report.tensors_expected, "tensors_matching": report.tensors_matching,
               "findings": [f.model_dump() for f in report.findings[:MAX_LISTED]], "findings_total": len(report.findings),
               "files": [f.model_dump() for f in report.files[:MAX_LISTED]]}  # fmt: skip
    if report.ok:
        return row(CheckStatus.PASS, f"All {report.tensors_expected} attested tensors are in {directory} with their digests, "
                                     "every other file is the pack's attested copy, the index (if any) names exactly the checked "
                                     "shards, and nothing else is there but allow-listed inert files.", details)  # fmt: skip
    failures = report.failures
    shown = "; ".join(failures[:5]) + (f"; and {len(failures) - 5} more" if len(failures) > 5 else "")
    return row(CheckStatus.FAIL, f"{directory} differs from the attested model: {shown}.", details)


def oms_rows(pack_root: Path, bundle_path: Path, public_key: Path | None, attested: Mapping[str, str] | None) -> list[CheckResult]:
    """The advisory ``oms_signature`` row, or none when no OMS signature lies beside the bundle.

    ``attested`` is the verified statement's ``{pack path: sha256}`` (None when the signature did not verify).
    """
    path = oms_path_for_bundle(bundle_path)
    if not path.exists() and not path.is_symlink():
        return []
    return [_oms_row(pack_root, path, public_key, attested)]


def _oms_row(pack_root: Path, path: Path, public_key: Path | None, attested: Mapping[str, str] | None) -> CheckResult:
    def row(status: CheckStatus, summary: str) -> CheckResult:
        return CheckResult(name="oms_signature", title=OMS_TITLE, status=status, required=False, summary=summary, details={"path": str(path)})

    if attested is None:
        return row(CheckStatus.SKIP, "Not checked: the acceptance signature did not verify.")
    status = verify_oms(pack_root, path, public_key, attested)
    outcome = {"valid": CheckStatus.PASS, "invalid": CheckStatus.FAIL}.get(status.status, CheckStatus.SKIP)
    return row(outcome, f"{status.status}: {status.detail}.")


def _attested_files(ctx: CheckContext) -> Mapping[str, str] | None:
    """The verified statement's file digests (computed once on the context), None without usable ones."""
    try:
        attested = ctx.attested()
    except VerificationError:  # unusable subjects: the pack_files row already says so
        return None
    return attested.files if attested is not None else None


def check_deployed(ctx: CheckContext) -> CheckResult | None:
    """Stage step: the ``deployed`` row, only when ``--deployed DIR`` was given."""
    if ctx.inputs.deployed is None:
        return None
    predicate = ctx.predicate
    files = _attested_files(ctx)
    manifest_sha256 = predicate.pack.manifest_sha256 if predicate is not None and files is not None else None
    pack = ctx.verified.pack if ctx.verified is not None else None
    return deployed_check(Path(ctx.inputs.pack), Path(ctx.inputs.deployed), manifest_sha256, files, pack)


def check_oms_signature(ctx: CheckContext) -> CheckResult | None:
    """Stage step: the advisory ``oms_signature`` row, only when an OMS signature lies beside the bundle."""
    if not isinstance(ctx.trust, KeyAnchor):  # keyless trust has no key: not checked
        rows = oms_rows(Path(ctx.inputs.pack), ctx.bundle_path, None, _attested_files(ctx))
        return rows[0] if rows else None
    anchor_key = ctx.trust.public_key
    if isinstance(anchor_key, (str, os.PathLike)):
        rows = oms_rows(Path(ctx.inputs.pack), ctx.bundle_path, Path(anchor_key), _attested_files(ctx))
        return rows[0] if rows else None
    # an anchor built from PEM bytes or a key object (the Python API): model_signing reads a PEM file
    from ..attest.keys import public_key_pem

    with tempfile.TemporaryDirectory(prefix="uc-oms-key-") as tmp:
        key_file = Path(tmp) / "vendor.pub"
        key_file.write_bytes(public_key_pem(ctx.trust.key()))
        rows = oms_rows(Path(ctx.inputs.pack), ctx.bundle_path, key_file, _attested_files(ctx))
    return rows[0] if rows else None
