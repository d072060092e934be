"""Two rows of ``attest check`` about deployment: the served directory (required) and the OMS signature (advisory).

* ``deployed`` (only with ``--deployed DIR``, then required): the directory a
  serving engine loads holds exactly the attested tensors, config and
  tokenizer (uc_attest.pack.deployed), judged against the manifest whose
  SHA-256 the signed statement gives.
* ``oms_signature`` (advisory, never decides the verdict; present only when an
  OpenSSF model-signing signature lies beside the bundle, so that a delivery
  without one reads as before): whether it verifies with the vendor's key over
  exactly the attested files (uc_attest.attest.oms).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..attest.oms import verify_oms
from ..attest.paths import oms_path_for_bundle
from ..attest.subjects import split_subjects
from ..errors import UcError
from ..pack.deployed import verify_deployed
from ..pack.reader import open_pack
from .context import CheckContext
from .results import CheckResult, CheckStatus

DEPLOYED_TITLE = "The deployed model directory holds exactly the attested model"
OMS_TITLE = "OpenSSF model signature of the pack"
MAX_LISTED = 50


def deployed_check(pack_root: Path, directory: Path, attested_manifest_sha256: str | None) -> CheckResult:
    """The required ``deployed`` row; ``attested_manifest_sha256`` is None when the signature did not verify."""
    def row(status: CheckStatus, summary: str, details: dict[str, Any] | None = None) -> CheckResult:
        return CheckResult(name="deployed", title=DEPLOYED_TITLE, status=status, required=True, summary=summary,
                           details={"directory": str(directory), **(details or {})})  # fmt: skip

    if attested_manifest_sha256 is None:
        return row(CheckStatus.SKIP, "Not checked: the signature did not verify, so there is no attested model to compare with.")
    try:
        pack = open_pack(pack_root)
        if pack.manifest_sha256 != attested_manifest_sha256:
            return row(CheckStatus.FAIL, "The pack's manifest is not the attested one; the deployed directory cannot be judged against it.")
        report = verify_deployed(pack, directory)
    except UcError as exc:
        return row(CheckStatus.FAIL, f"{exc}.")
    details = {"tensors_expected": report.tensors_expected, "tensors_matching": report.tensors_matching,
               "findings": [f.model_dump() for f in report.findings[:MAX_LISTED]], "findings_total": len(report.findings),
               "files": [f.model_dump() for f in report.files[:MAX_LISTED]]}  # fmt: skip
    if report.ok:
        return row(CheckStatus.PASS, f"All {report.tensors_expected} attested tensors are in {directory} with their digests, "
                                     "nothing else is, and its config and tokenizer files equal the pack's.", details)  # fmt: skip
    failures = report.failures
    shown = "; ".join(failures[:5]) + (f"; and {len(failures) - 5} more" if len(failures) > 5 else "")
    return row(CheckStatus.FAIL, f"{directory} differs from the attested model: {shown}.", details)


def oms_rows(pack_root: Path, bundle_path: Path, public_key: Path | None, verified: Any | None) -> list[CheckResult]:
    """The advisory ``oms_signature`` row, or none when no OMS signature lies beside the bundle."""
    path = oms_path_for_bundle(bundle_path)
    if not path.exists() and not path.is_symlink():
        return []
    return [_oms_row(pack_root, path, public_key, verified)]


def _oms_row(pack_root: Path, path: Path, public_key: Path | None, verified: Any | None) -> CheckResult:
    def row(status: CheckStatus, summary: str) -> CheckResult:
        return CheckResult(name="oms_signature", title=OMS_TITLE, status=status, required=False, summary=summary, details={"path": str(path)})

    if verified is None:
        return row(CheckStatus.SKIP, "Not checked: the acceptance signature did not verify.")
    attested, _ = split_subjects(verified.statement)
    status = verify_oms(pack_root, path, public_key, attested)
    outcome = {"valid": CheckStatus.PASS, "invalid": CheckStatus.FAIL}.get(status.status, CheckStatus.SKIP)
    return row(outcome, f"{status.status}: {status.detail}.")


def check_deployed(ctx: CheckContext) -> CheckResult | None:
    """Stage step: the ``deployed`` row, only when ``--deployed DIR`` was given."""
    if ctx.inputs.deployed is None:
        return None
    predicate = ctx.predicate
    return deployed_check(Path(ctx.inputs.pack), Path(ctx.inputs.deployed), predicate.pack.manifest_sha256 if predicate else None)


def check_oms_signature(ctx: CheckContext) -> CheckResult | None:
    """Stage step: the advisory ``oms_signature`` row, only when an OMS signature lies beside the bundle."""
    public_key = getattr(ctx.trust, "public_key", None)  # keyless trust has none: the row then says not checked
    rows = oms_rows(Path(ctx.inputs.pack), ctx.bundle_path, public_key, ctx.attestation)
    return rows[0] if rows else None
