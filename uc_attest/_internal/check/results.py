"""results.json: everything ``attest check`` found, as one pydantic model.

The results file is the machine-readable record of a check and the single
source the PDF report is drawn from; an auditor's tooling reads it, and its
JSON Schema is published in docs/results.schema.json (regenerate it with
``UC_ATTEST_UPDATE_SCHEMA=1 pytest tests/report/test_results_schema.py``).

Two properties matter more than convenience:

* the verdict is not free text: it is derived from the checks, and a results
  file whose verdict disagrees with its own checks is refused on load;
* serialisation is canonical (:meth:`Results.to_json_bytes`), so that the same
  results always give the same bytes, the same digest, and the same report.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime, timezone
from enum import Enum
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    PlainSerializer,
    ValidationError,
    WithJsonSchema,
    model_validator,
)

from ..digests import SHA256_HEX_PATTERN, Sha256Hex
from ..errors import UnreadableInputError
from .probe_record import ProbeRecord

RESULTS_SCHEMA_VERSION: Final = 1

_HEX64 = SHA256_HEX_PATTERN
MAX_RESULTS_BYTES = 256 << 20  # every reader of a results.json (attest report, attest bom) caps it here
_TENSOR_DIGEST = r"^(sha256:)?[0-9a-f]{64}$"


class _Model(BaseModel):
    """Base: unknown keys are refused, so a results file cannot smuggle in fields."""

    model_config = ConfigDict(extra="forbid", frozen=True, ser_json_inf_nan="strings")


def _utc_text(moment: datetime) -> str:
    """ISO 8601 in UTC with a ``Z``: one spelling per instant, for stable bytes."""
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


UtcDateTime = Annotated[
    AwareDatetime,
    PlainSerializer(_utc_text, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
"""A timezone-aware instant, written as ISO 8601 UTC ('...Z')."""


class CheckStatus(str, Enum):
    """Outcome of one check. SKIP means not run (by policy, or after an earlier failure)."""

    PASS = "PASS"
    FAIL = "FAIL"
    SKIP = "SKIP"


class Verdict(str, Enum):
    """The overall answer: PASS only if every check the policy requires passed."""

    PASS = "PASS"
    FAIL = "FAIL"


class CheckResult(_Model):
    """One named check with the evidence behind its status."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="Stable machine name, e.g. 'signature'.")
    title: str = Field(description="What was checked, in plain words, e.g. 'Vendor signature is valid'.")
    status: CheckStatus
    required: bool = Field(description="Whether the policy makes this check decide the verdict.")
    summary: str = Field(description="One or two sentences of evidence an auditor can read.")
    details: dict[str, JsonValue] = Field(default_factory=dict, description="Machine-readable evidence.")


class SignerIdentity(_Model):
    """Who signed: a key fingerprint (key mode) or a certificate identity (keyless)."""

    mode: Literal["key", "keyless"]
    key_fingerprint: str | None = Field(default=None, pattern=_HEX64, description="SHA-256 of the DER public key.")
    identity: str | None = Field(default=None, description="Keyless: the certificate's subject (e-mail or URI).")
    issuer: str | None = Field(default=None, description="Keyless: the OIDC issuer that vouched for the identity.")
    verified: bool = Field(default=True, description="False: the signature did not verify; this is the signer the customer expected.")

    @model_validator(mode="after")
    def _one_kind(self) -> SignerIdentity:
        if self.mode == "key" and not self.key_fingerprint:
            raise ValueError("a key-mode signer needs key_fingerprint")
        if self.mode == "keyless" and not (self.identity and self.issuer):
            raise ValueError("a keyless signer needs identity and issuer")
        return self

    def describe(self) -> str:
        """One line for people: the fingerprint or 'identity (issuer)'."""
        if self.mode == "key":
            return f"key sha256:{self.key_fingerprint}"
        return f"{self.identity} (issuer {self.issuer})"


class ArtifactIdentity(_Model):
    """What was checked, who vouched for it, and when."""

    model_type: str = Field(description="Architecture, e.g. 'llama'.")
    model_name: str = Field(description="Name the vendor gave the model, e.g. 'SmolLM2-135M'.")
    model_source_note: str = Field(
        default="",
        description="Where the compressed model's weights came from, as the pack's manifest states it "
        "(e.g. 'dequantised from a Q4_1 GGUF'); empty when the manifest says nothing.",
    )
    pack_manifest_sha256: Sha256Hex = Field(pattern=_HEX64)
    signer: SignerIdentity
    signed_at: UtcDateTime | None = Field(default=None, description="Signing time (vendor-stated in key mode).")
    expires_at: UtcDateTime | None = None
    checked_at: UtcDateTime = Field(description="When this check ran (customer clock).")


class PolicyRecord(_Model):
    """The policy the verdict was made under, with its exact text and digest."""

    name: str
    source: str = Field(description="Where it was read from (a path, or a shipped policy).")
    sha256: Sha256Hex = Field(pattern=_HEX64, description="SHA-256 of the policy file's bytes.")
    text: str = Field(description="The policy file's text (UTF-8), so the results stand alone.")

    @model_validator(mode="after")
    def _digest_matches(self) -> PolicyRecord:
        if hashlib.sha256(self.text.encode("utf-8")).hexdigest() != self.sha256:
            raise ValueError("policy.sha256 is not the SHA-256 of policy.text")
        return self


class Digests(_Model):
    """The digests that tie this result to its inputs."""

    bundle_sha256: Sha256Hex = Field(pattern=_HEX64, description="SHA-256 of the attestation bundle file.")
    pack_manifest_sha256: Sha256Hex = Field(pattern=_HEX64)
    policy_sha256: Sha256Hex = Field(pattern=_HEX64)
    statement_sha256: Sha256Hex | None = Field(default=None, pattern=_HEX64, description="SHA-256 of the signed in-toto Statement.")


class Environment(_Model):
    """Software and hardware a measurement ran on (one side: vendor or customer)."""

    python: str | None = None
    platform: str | None = None
    machine: str | None = None
    processor: str | None = None
    device: str | None = Field(default=None, description="Where the model ran, e.g. 'cpu' or 'cuda:0'.")
    gpu: str | None = None
    dtype: str | None = Field(default=None, description="Arithmetic precision of the measurement, e.g. 'float32'.")
    threads: int | None = None
    torch: str | None = None
    transformers: str | None = None
    uc_attest: str | None = None
    other: dict[str, str] = Field(default_factory=dict, description="Anything else the side recorded.")

    def rows(self) -> dict[str, str]:
        """Flat name -> value view for display; empty fields are left out."""
        out: dict[str, str] = {}
        for key in ("uc_attest", "python", "torch", "transformers", "platform", "machine", "processor", "device", "gpu", "dtype", "threads"):
            value = getattr(self, key)
            if value is not None and value != "":
                out[key] = str(value)
        out.update({k: v for k, v in sorted(self.other.items())})
        return out


class Environments(_Model):
    vendor: Environment | None = Field(default=None, description="As stated in the signed attestation.")
    customer: Environment


class PerplexityMeasurement(_Model):
    """One perplexity measurement over fixed token windows; hex strings are exact."""

    perplexity: float
    perplexity_hex: str = Field(description="float.hex() of the float64 value: the exact bits.")
    tokens: int = Field(ge=0)
    windows: int = Field(ge=0)
    seq_len: int | None = Field(default=None, ge=1)
    method: str = Field(description="How it was measured (window scheme, dtype, dataset).")
    window_nll: list[float] = Field(description="Negative log-likelihood of each window: the sum over its predicted tokens, in nats.")
    window_nll_hex: list[str]

    @model_validator(mode="after")
    def _consistent(self) -> PerplexityMeasurement:
        if len(self.window_nll) != len(self.window_nll_hex):
            raise ValueError("window_nll and window_nll_hex differ in length")
        if self.windows and len(self.window_nll) != self.windows:
            raise ValueError("window_nll length differs from windows")
        return self


class PerplexityComparison(_Model):
    """Vendor's attested quality figure against the one re-measured here."""

    attested: PerplexityMeasurement | None = None
    measured: PerplexityMeasurement | None = None
    baseline_perplexity: float | None = Field(default=None, description="Vendor's figure for the original, uncompressed model.")
    baseline_perplexity_hex: str | None = None
    dataset: str | None = Field(default=None, description="Evaluation text, e.g. name and digest.")
    abs_difference: float | None = None
    rel_difference: float | None = None
    bit_identical: bool | None = None
    window_nll_diff: list[float] = Field(default_factory=list, description="Per window: measured minus attested NLL sum (nats).")
    ratio_to_baseline: float | None = None
    relative_tolerance: float | None = None
    absolute_tolerance: float | None = None
    max_ratio_to_baseline: float | None = None


class TensorCheck(_Model):
    """A reconstructed tensor's digest against the attested one."""

    name: str
    block: str = Field(description="The model block the tensor belongs to (for grouping).")
    kind: str = Field(description="'quantized' (reconstructed from codes) or 'stored' (kept as is).")
    attested_digest: str | None = Field(default=None, pattern=_TENSOR_DIGEST)
    computed_digest: str | None = Field(default=None, pattern=_TENSOR_DIGEST)
    status: CheckStatus


class BlockSummary(_Model):
    """Reconstruction results of one block (a transformer layer, or 'other')."""

    block: str
    tensors: int
    matched: int
    mismatched: int
    skipped: int
    status: CheckStatus


class Reconstruction(_Model):
    tensors: list[TensorCheck] = Field(default_factory=list)
    blocks: list[BlockSummary] = Field(default_factory=list)


class FileCheck(_Model):
    """A pack file's hash against the one in the signed statement."""

    path: str
    size: int | None = Field(default=None, ge=0)
    sha256: Sha256Hex | None = Field(default=None, pattern=_HEX64, description="Computed here; None if the file is missing.")
    attested_sha256: Sha256Hex | None = Field(default=None, pattern=_HEX64, description="From the statement; None if not attested.")
    status: CheckStatus


class ToolInfo(_Model):
    name: Literal["uc_attest"] = "uc_attest"
    version: str


class Results(_Model):
    """The whole outcome of ``attest check``."""

    schema_version: Literal[1] = RESULTS_SCHEMA_VERSION
    tool: ToolInfo
    verdict: Verdict
    verdict_reasons: list[str] = Field(description="Why the verdict is what it is: the failed required checks, or a pass line.")
    artifact: ArtifactIdentity
    policy: PolicyRecord
    digests: Digests
    checks: list[CheckResult]
    perplexity: PerplexityComparison
    reconstruction: Reconstruction
    files: list[FileCheck]
    environments: Environments
    probe: ProbeRecord | None = Field(default=None, description="attest probe: a live endpoint's log-probabilities on the signed windows (absent for attest check).")

    @model_validator(mode="after")
    def _self_consistent(self) -> Results:
        if derive_verdict(self.checks) is not self.verdict:
            raise ValueError("verdict does not follow from the checks")
        if self.digests.policy_sha256 != self.policy.sha256:
            raise ValueError("digests.policy_sha256 differs from policy.sha256")
        if self.digests.pack_manifest_sha256 != self.artifact.pack_manifest_sha256:
            raise ValueError("digests.pack_manifest_sha256 differs from artifact.pack_manifest_sha256")
        names = [c.name for c in self.checks]
        if len(names) != len(set(names)):
            raise ValueError("check names are not unique")
        return self

    def to_json_bytes(self) -> bytes:
        """Canonical bytes: fixed key order, two-space indent, UTF-8, trailing newline."""
        exclude = {"probe"} if self.probe is None else None  # results of attest check keep their bytes
        return (self.model_dump_json(indent=2, exclude=exclude) + "\n").encode("utf-8")

    def sha256(self) -> str:
        return hashlib.sha256(self.to_json_bytes()).hexdigest()

    def check(self, name: str) -> CheckResult | None:
        return next((c for c in self.checks if c.name == name), None)


def derive_verdict(checks: list[CheckResult]) -> Verdict:
    """PASS only if there is at least one check and every required check passed.

    A required check that was skipped does not pass: a verdict must never rest
    on something that was not looked at.
    """
    if not checks:
        return Verdict.FAIL
    ok = all(c.status is CheckStatus.PASS for c in checks if c.required)
    return Verdict.PASS if ok else Verdict.FAIL


def verdict_reasons(checks: list[CheckResult]) -> list[str]:
    """The plain-words reasons for :func:`derive_verdict`'s answer."""
    if not checks:
        return ["No checks were run."]
    failed = [c for c in checks if c.required and c.status is CheckStatus.FAIL]
    skipped = [c for c in checks if c.required and c.status is CheckStatus.SKIP]
    if not failed and not skipped:
        return ["Every check the policy requires passed."]
    reasons = [f"{c.title}: {c.summary}" for c in failed]
    if skipped and failed:
        reasons.append(f"Not run because of the failures above: {'; '.join(c.title for c in skipped)}.")
    elif skipped:
        reasons += [f"{c.title}: not run ({c.summary})" for c in skipped]
    return reasons


_BLOCK = re.compile(r"^(.*?\b(?:layers|h|blocks|block|layer)\.\d+)\.")


def block_label(tensor_name: str) -> str:
    """Group a tensor under its transformer block, e.g. 'model.layers.3'; else 'other'."""
    match = _BLOCK.match(tensor_name)
    return match.group(1) if match else "other"


def _block_key(block: str) -> tuple[int, str, int]:
    if block == "other":
        return (1, "", 0)
    head, _, index = block.rpartition(".")
    return (0, head, int(index) if index.isdigit() else 0)


def summarize_blocks(tensors: list[TensorCheck]) -> list[BlockSummary]:
    """One :class:`BlockSummary` per block, layers in numeric order, 'other' last."""
    groups: dict[str, list[TensorCheck]] = {}
    for tensor in tensors:
        groups.setdefault(tensor.block, []).append(tensor)
    out = []
    for block in sorted(groups, key=_block_key):
        items = groups[block]
        matched = sum(t.status is CheckStatus.PASS for t in items)
        mismatched = sum(t.status is CheckStatus.FAIL for t in items)
        skipped = len(items) - matched - mismatched
        status = CheckStatus.FAIL if mismatched else (CheckStatus.PASS if matched == len(items) else CheckStatus.SKIP)
        out.append(BlockSummary(block=block, tensors=len(items), matched=matched, mismatched=mismatched, skipped=skipped, status=status))
    return out


def load_results(data: bytes, source: str = "results.json") -> Results:
    """Parse results.json bytes; anything unreadable is one UnreadableInputError line."""
    try:
        raw: Any = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UnreadableInputError(f"{source}: not a JSON document ({exc})") from None
    except RecursionError:
        raise UnreadableInputError(f"{source}: JSON nested too deeply to be a results file") from None
    try:
        return Results.model_validate(raw)
    except RecursionError:
        raise UnreadableInputError(f"{source}: JSON nested too deeply to be a results file") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        more = f" (and {exc.error_count() - 1} more problems)" if exc.error_count() > 1 else ""
        where = f"{loc}: " if loc else ""
        raise UnreadableInputError(f"{source}: not a uc_attest results file: {where}{first['msg'].removeprefix('Value error, ')}{more}") from None


def results_json_schema() -> dict[str, Any]:
    """The JSON Schema of results.json, as published in docs/results.schema.json."""
    schema = Results.model_json_schema(mode="serialization")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


def results_json_schema_text() -> str:
    """The schema as the exact text committed in docs/results.schema.json."""
    return json.dumps(results_json_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"

