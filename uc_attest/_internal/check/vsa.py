"""The customer's signed verdict: an in-toto Statement v1 carrying a SLSA Verification Summary.

``attest check --sign-key`` (or ``--sign-sigstore``) signs what the customer
checked, so that the verdict in results.json and the report is evidence and
not just a file anyone could edit. The predicate is SLSA's Verification
Summary Attestation (``https://slsa.dev/verification_summary/v1``), which
verifiers and policy engines already understand; this module fills its fields
as follows (also in docs/ATTESTATION.md):

* ``verifier.id``: ``https://uc-attest.dev/attest-check`` with the tool version;
* ``timeVerified``: when the check ran (``checked_at`` of the results: the
  customer's clock; in keyless mode the transparency log's time is the one a
  verifier can trust, see :class:`VerifiedSummary`);
* ``resourceUri``: ``urn:uc-attest:pack:sha256:<manifest digest>``;
* ``policy``: ``urn:uc-attest:policy:<name>`` and the policy file's SHA-256;
* ``inputAttestations``: the vendor's bundle, by its SHA-256;
* ``verificationResult``: ``PASSED`` / ``FAILED`` (the verdict);
* ``verifiedLevels``: ``UC_ATTEST_POLICY_<NAME>`` when the verdict is PASS
  under a shipped policy file, byte for byte; ``UC_ATTEST_POLICY_CUSTOM_<digest>``
  under any other policy (uc_attest._internal.policy.levels); empty when it is FAIL
  (project levels never start with ``SLSA_``).

Its subjects pin the pack (``pack/<path>`` for every file, the manifest
``pack/ucpack.json`` among them) and ``results.json`` by the SHA-256 of its
exact bytes, so the verdict, every check and every measured figure are signed.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..pack.strict_json import StrictFrozenModel as _Model
from .results import Results
from ..pack.manifest import MANIFEST_NAME
from ..policy.levels import LEVEL_PREFIX, policy_level
from ..attest.errors import StatementError
from ..attest.predicate import PACK_SUBJECT_PREFIX
from ..attest.statement import DigestSet, Statement, Subject, parse_statement

VSA_PREDICATE_TYPE = "https://slsa.dev/verification_summary/v1"
VERIFIER_ID = "https://uc-attest.dev/attest-check"
PROBE_VERIFIER_ID = "https://uc-attest.dev/attest-probe"  # attest probe: behaviour of an endpoint, not a check of the bytes
RESULTS_SUBJECT = "results.json"
"""Subject name of the check's results file (whatever the file is called on disk)."""
PACK_URI_PREFIX = "urn:uc-attest:pack:sha256:"
POLICY_URI_PREFIX = "urn:uc-attest:policy:"


class Verifier(_Model):
    id: str = Field(min_length=1)
    version: dict[str, str] = Field(default_factory=dict)


class ResourceDigest(_Model):
    """A URI and its SHA-256, as the VSA's ``policy`` and ``inputAttestations`` entries carry."""

    uri: str = Field(min_length=1)
    digest: DigestSet


class VerificationSummary(_Model):
    """The VSA v1 predicate, restricted to the fields this project writes (unknown fields are refused)."""

    verifier: Verifier
    time_verified: AwareDatetime = Field(alias="timeVerified")
    resource_uri: str = Field(alias="resourceUri", min_length=1)
    policy: ResourceDigest
    input_attestations: list[ResourceDigest] = Field(alias="inputAttestations", min_length=1, max_length=1)
    verification_result: Literal["PASSED", "FAILED"] = Field(alias="verificationResult")
    verified_levels: list[str] = Field(alias="verifiedLevels", max_length=8)
    slsa_version: Literal["1.0"] = Field(default="1.0", alias="slsaVersion")

    @field_validator("verified_levels")
    @classmethod
    def _project_levels(cls, levels: list[str]) -> list[str]:
        for level in levels:
            if level.startswith("SLSA_") or not level.startswith(LEVEL_PREFIX):
                raise ValueError(f"level {level!r} is not a uc_attest policy level ({LEVEL_PREFIX}<NAME>)")
        return levels


def build_vsa_statement(results: Results, results_bytes: bytes, bundle_sha256: str) -> Statement:
    """The statement the customer signs for ``results`` whose exact bytes are ``results_bytes``.

    ``results_bytes`` must be what is written to results.json and embedded in
    the report; the pack subjects come from the file hashes computed during the
    check (a file the check could not hash is not pinned, and then the verdict
    is FAIL anyway).
    """
    if results.digests.bundle_sha256 != bundle_sha256:
        raise ValueError("the results were not made for this vendor bundle")
    pack = {f.path: f.sha256 for f in results.files if f.sha256 is not None}
    pack.setdefault(MANIFEST_NAME, results.artifact.pack_manifest_sha256)
    if pack[MANIFEST_NAME] != results.artifact.pack_manifest_sha256:
        raise ValueError("the manifest's file hash differs from the manifest digest in the results")
    subjects = [Subject(name=PACK_SUBJECT_PREFIX + path, digest=DigestSet(sha256=digest)) for path, digest in sorted(pack.items())]
    subjects.append(Subject(name=RESULTS_SUBJECT, digest=DigestSet(sha256=hashlib.sha256(results_bytes).hexdigest())))
    passed = results.verdict.value == "PASS"
    summary = VerificationSummary(
        verifier=Verifier(id=VERIFIER_ID if results.probe is None else PROBE_VERIFIER_ID, version={"uc_attest": results.tool.version}),
        timeVerified=results.artifact.checked_at,
        resourceUri=PACK_URI_PREFIX + results.artifact.pack_manifest_sha256,
        policy=ResourceDigest(uri=POLICY_URI_PREFIX + results.policy.name, digest=DigestSet(sha256=results.policy.sha256)),
        inputAttestations=[ResourceDigest(uri="attestation.sigstore.json", digest=DigestSet(sha256=bundle_sha256))],
        verificationResult="PASSED" if passed else "FAILED",
        verifiedLevels=[policy_level(results.policy.name, results.policy.sha256) + ("" if results.probe is None else "_ENDPOINT_PROBE")] if passed else [],
    )
    return Statement(subject=subjects, predicateType=VSA_PREDICATE_TYPE, predicate=summary.model_dump(by_alias=True, mode="json"))


class SignedVerdict(BaseModel):
    """A verified VSA statement: its typed summary and the subjects it pins."""

    model_config = ConfigDict(frozen=True)

    statement: Statement
    summary: VerificationSummary
    results_sha256: str
    pack_files: dict[str, str]


def parse_vsa(payload: bytes) -> SignedVerdict:
    """Parse verified payload bytes as a VSA statement; any other shape is a :class:`StatementError`."""
    statement = parse_statement(payload)
    if statement.predicate_type != VSA_PREDICATE_TYPE:
        raise StatementError(f"not a verification summary (predicateType {statement.predicate_type!r}, expected {VSA_PREDICATE_TYPE})")
    try:
        summary = VerificationSummary.model_validate(statement.predicate)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err.get("loc", ()))
        raise StatementError(f"malformed verification summary at {where}: {err.get('msg', 'invalid')}") from None
    results_sha: str | None = None
    pack: dict[str, str] = {}
    for subject in statement.subject:
        if subject.name == RESULTS_SUBJECT:
            results_sha = subject.digest.sha256
        elif subject.name.startswith(PACK_SUBJECT_PREFIX):
            pack[subject.name.removeprefix(PACK_SUBJECT_PREFIX)] = subject.digest.sha256
        else:
            raise StatementError(f"unexpected subject {subject.name!r} in the verification summary")
    if results_sha is None:
        raise StatementError(f"the verification summary does not pin {RESULTS_SUBJECT}")
    if MANIFEST_NAME not in pack:
        raise StatementError(f"the verification summary does not pin the pack manifest ({PACK_SUBJECT_PREFIX}{MANIFEST_NAME})")
    return SignedVerdict(statement=statement, summary=summary, results_sha256=results_sha, pack_files=pack)


def verdict_mismatches(verdict: SignedVerdict, results: Results, results_bytes: bytes, bundle_sha256: str) -> list[str]:
    """Where a signed verdict and the results (and vendor bundle) it is shown with disagree; empty when none."""
    problems: list[str] = []
    actual = hashlib.sha256(results_bytes).hexdigest()
    if verdict.results_sha256 != actual:
        problems.append(f"results.json (sha256 {actual[:16]}...) is not the one the customer signed ({verdict.results_sha256[:16]}...)")
    s = verdict.summary
    if s.input_attestations[0].digest.sha256 != bundle_sha256:
        problems.append("the signed verdict was made for another vendor attestation (bundle sha256 differs)")
    if s.resource_uri != PACK_URI_PREFIX + results.artifact.pack_manifest_sha256 or verdict.pack_files.get(MANIFEST_NAME) != results.artifact.pack_manifest_sha256:
        problems.append("the signed verdict is about another pack (manifest digest differs)")
    if s.verification_result != ("PASSED" if results.verdict.value == "PASS" else "FAILED"):
        problems.append(f"the signed verdict says {s.verification_result}, the results say {results.verdict.value}")
    if s.policy.digest.sha256 != results.policy.sha256:
        problems.append("the signed verdict names another policy (policy sha256 differs)")
    if s.time_verified != results.artifact.checked_at:
        problems.append("the signed verdict's timeVerified is not the check time in the results")
    return problems


def describe_time(time_verified: datetime, logged_at: datetime | None) -> str:
    """How far the verdict's time can be trusted, in words for people."""
    if logged_at is not None:
        return f"signed at {logged_at.isoformat()} per the transparency log (verified); the check ran at {time_verified.isoformat()} by the customer's clock"
    return f"checked at {time_verified.isoformat()}: this time is the signer's own claim (key mode: no trusted timestamp)"
