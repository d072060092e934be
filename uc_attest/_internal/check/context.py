"""What every check of ``attest check`` reads and adds to: inputs, the trust anchor, the verified objects.

Each check (one module each in this package) is a function ``CheckContext ->
CheckResult``. It reads the policy, the trust anchor and the objects earlier
stages established (the verified attestation, the :class:`VerifiedPack`) and
may leave evidence for the results (file rows, tensor rows, the perplexity
comparison). The runner (run.py) calls them in order and appends each result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ..attest.subjects import AttestedFiles
from ..attest.trust import TrustAnchor
from ..attest.verify import VerifiedAttestation
from ..evaluate.settings import EvalSettings
from ..pack.verified import VerifiedPack
from ..policy.loader import LoadedPolicy
from ..policy.model import Policy
from ..policy.rules import Decision
from .results import CheckResult, CheckStatus, Environment, FileCheck, TensorCheck

TITLES = {
    "signature": "Vendor signature is genuine",
    "signer_trust": "Signer is trusted by the policy",
    "attestation_age": "Attestation is recent and not expired",
    "pack_files": "Every pack file matches the signed hash",
    "pack_structure": "Pack structure is valid",
    "weights_bit_exact": "Rebuilt weights are identical to the signed ones",
    "eval_tokens": "Evaluation text is the one the vendor measured on",
    "perplexity_match": "Quality measured here matches the signed figure",
    "baseline_ratio": "Quality loss against the original model is acceptable",
}


@dataclass(frozen=True)
class CheckInputs:
    """Everything ``attest check`` needs: the pack, the policy and one trust anchor."""

    pack: Path
    policy: LoadedPolicy
    trust: TrustAnchor
    bundle: Path | None = None
    tokens: Path | None = None
    evaluation: EvalSettings = EvalSettings()  # how perplexity is re-measured; the windows are always the signed ones
    now: datetime | None = None
    fail_fast: bool = False  # stop before the costly stages once a required check has failed
    deployed: Path | None = None  # a served model directory to prove equal to the attested model (deploy_checks.py)

    @property
    def progress(self) -> bool:
        return self.evaluation.progress


@dataclass
class CheckContext:
    """The state one run of the check builds up, stage by stage."""

    inputs: CheckInputs
    now: datetime
    bundle_bytes: bytes
    tokens_path: Path
    bundle_path: Path
    attestation: VerifiedAttestation | None = None
    verified: VerifiedPack | None = None
    pack_error: str | None = None  # why the pack could not be read at all
    pack_skipped: bool = False  # --fail-fast: the verification pass did not run
    attested_tokens: str | None = None  # the signed SHA-256 of the evaluation token file
    token_ids: Any = None  # the evaluation tokens, once their digest matched the signed one
    files: list[FileCheck] = field(default_factory=list)
    tensors: list[TensorCheck] = field(default_factory=list)
    comparison: dict[str, Any] = field(default_factory=dict)
    measured_perplexity: float | None = None
    customer_env: Environment | None = None
    checks: list[CheckResult] = field(default_factory=list)
    _attested: AttestedFiles | None = field(default=None, repr=False)

    @property
    def policy(self) -> Policy:
        return self.inputs.policy.policy

    @property
    def trust(self) -> TrustAnchor:
        return self.inputs.trust

    @property
    def predicate(self) -> Any:
        return self.attestation.predicate if self.attestation is not None else None

    def attested(self) -> AttestedFiles | None:
        """The verified statement's file digests, split once for every check (None without a verified attestation).

        Raises StatementError when the subjects are unusable (the pack_files check reports it).
        """
        if self.attestation is None:
            return None
        if self._attested is None:
            self._attested = AttestedFiles.of(self.attestation.statement)
        return self._attested

    def failed(self) -> bool:
        """Whether a required check has failed so far (the verdict can no longer be PASS)."""
        return any(c.required and c.status == CheckStatus.FAIL for c in self.checks)

    def pack_is_the_signed_one(self) -> bool:
        """The pack verified and its manifest is the one the signature covers."""
        v, p = self.verified, self.predicate
        return v is not None and v.report.ok and p is not None and p.pack.manifest_sha256 == v.report.manifest_sha256


def result(name: str, status: CheckStatus, required: bool, summary: str, details: dict[str, Any] | None = None) -> CheckResult:
    return CheckResult(name=name, title=TITLES[name], status=status, required=required, summary=summary, details=_jsonable(details or {}))


def passed(name: str, summary: str, details: dict[str, Any] | None = None, required: bool = True) -> CheckResult:
    return result(name, CheckStatus.PASS, required, summary, details)


def failed(name: str, summary: str, details: dict[str, Any] | None = None, required: bool = True) -> CheckResult:
    return result(name, CheckStatus.FAIL, required, summary, details)


def skipped(name: str, why: str, required: bool = True) -> CheckResult:
    return result(name, CheckStatus.SKIP, required, why)


def decided(name: str, decision: Decision, required: bool = True) -> CheckResult:
    return result(name, CheckStatus.PASS if decision.ok else CheckStatus.FAIL, required, decision.summary, decision.details)


def _jsonable(details: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in details.items():
        if isinstance(value, float) and value != value:  # NaN
            out[key] = None
        elif isinstance(value, (str, int, float, bool)) or value is None:
            out[key] = value
        else:
            out[key] = str(value)
    return out


NOT_SIGNED = "Not checked: the signature did not verify."
FAIL_FAST = "Not checked: an earlier required check failed and --fail-fast stops there."
