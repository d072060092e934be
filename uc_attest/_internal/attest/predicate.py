"""The acceptance-test predicate: what the vendor measured about a pack, and under which conditions.

Predicate type ``https://uc-attest.dev/acceptance-test/v1``. The version is in
the URI: any change to the fields below is a new predicate type, and a
verifier refuses a type it does not know (every model forbids unknown fields,
so a document has exactly one meaning).

Numbers that a customer compares exactly (perplexities, NLL sums, per-window
NLLs, the ratio) are float64; each is written twice: as a JSON number (for
people and for tools that only read numbers) and as the exact ``float.hex``
string beside it (``perplexityHex`` ...), which is authoritative. The model
refuses a document whose number and hex disagree, so the two can never tell
different stories.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from ..digests import Sha256Hex, TensorDigestText
from ..evaluate.environment import EnvironmentInfo

PREDICATE_TYPE = "https://uc-attest.dev/acceptance-test/v1"
"""The only predicate type this version writes and verifies."""

TOKENS_SUBJECT = "eval-tokens.safetensors"
"""Subject name of the evaluation token file."""

PACK_SUBJECT_PREFIX = "pack/"
"""Pack files are subjects named ``pack/<path relative to the pack directory>``."""



def float_hex(value: float) -> str:
    """The exact, round-trippable text of a float64."""
    return float(value).hex()


def _same_float(value: float, hex_text: str, what: str) -> None:
    try:
        exact = float.fromhex(hex_text)
    except (ValueError, OverflowError):
        raise ValueError(f"{what}Hex is not a float hex string") from None
    if not math.isfinite(exact):
        raise ValueError(f"{what} is not finite")
    if exact != value or math.copysign(1.0, exact) != math.copysign(1.0, value):
        raise ValueError(f"{what} and {what}Hex disagree")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True, alias_generator=to_camel)


class ToolInfo(_Model):
    name: Literal["uc_attest"] = "uc_attest"
    version: str


class TensorDigest(_Model):
    """One tensor of the pack and the SHA-256 digest of its canonical reconstruction."""

    name: str
    kind: str
    digest: TensorDigestText


class PackInfo(_Model):
    """Which pack was tested: its format, the manifest's digest and every tensor's reconstruction digest.

    The manifest digest alone pins the tensor digests (the manifest lists
    them); listing them here too lets a report show and compare each tensor
    without opening the pack, and makes the predicate self-describing.
    """

    format: str
    format_version: str
    manifest_path: str
    manifest_sha256: Sha256Hex
    model_type: str
    architectures: list[str]
    tensors: list[TensorDigest]


class DatasetInfo(_Model):
    """The evaluation tokens: a safetensors file carried with the attestation and pinned by digest."""

    subject: str = TOKENS_SUBJECT
    sha256: Sha256Hex
    token_count: int = Field(ge=2)
    text_sha256: Sha256Hex
    text_source: str = Field(description="'built-in' or the evaluation text's file name")
    tokenizer: str = Field(description="whose tokenizer produced the ids: 'pack'")


class PerplexityResult(_Model):
    """Perplexity of one model on the tokens, with the NLL of every window (float64, exact hex beside)."""

    perplexity: float
    perplexity_hex: str
    nll_sum: float
    nll_sum_hex: str
    predicted_tokens: int = Field(ge=1)
    window_nll: list[float]
    window_nll_hex: list[str]

    @model_validator(mode="after")
    def _exact(self) -> PerplexityResult:
        _same_float(self.perplexity, self.perplexity_hex, "perplexity")
        _same_float(self.nll_sum, self.nll_sum_hex, "nllSum")
        if len(self.window_nll) != len(self.window_nll_hex):
            raise ValueError("windowNll and windowNllHex differ in length")
        for i, (v, h) in enumerate(zip(self.window_nll, self.window_nll_hex, strict=True)):
            _same_float(v, h, f"windowNll[{i}]")
        _cross_check(self)
        return self


# exp() comes from the platform's libm, which may round the last bit differently; the sum and the
# quotient are exact IEEE operations and are compared bit for bit.
_EXP_REL_TOLERANCE = 1e-12


def _cross_check(result: PerplexityResult) -> None:
    """A signed figure must follow from the signed window NLLs: nllSum = fsum(windowNll), perplexity = exp(nllSum/tokens).

    Otherwise a statement could sign a perplexity that its own evidence
    contradicts, and a verifier that compares only the headline number would
    accept it.
    """
    if not result.window_nll:
        raise ValueError("windowNll is empty")
    total = math.fsum(result.window_nll)
    if total != result.nll_sum:
        raise ValueError(f"nllSum {result.nll_sum!r} is not the sum of windowNll ({total!r})")
    expected = math.exp(result.nll_sum / result.predicted_tokens)
    if not math.isclose(result.perplexity, expected, rel_tol=_EXP_REL_TOLERANCE, abs_tol=0.0):
        raise ValueError(f"perplexity {result.perplexity!r} is not exp(nllSum / predictedTokens) = {expected!r}")


class FileDigest(_Model):
    path: str
    sha256: Sha256Hex


class BaselineModelInfo(_Model):
    """The unquantized model the pack was compared with: its directory name and its files' digests.

    ``matchesPackSource`` says whether these files are exactly the source files
    the pack's manifest recorded at compress time (None: an attestation made
    before this was checked). A vendor may sign a baseline that differs only
    with an explicit override, whose reason is then signed here as
    ``sourceOverride``: a verifier sees that the ratio compares with another model.
    """

    name: str
    files: list[FileDigest] = Field(min_length=1)
    matches_pack_source: bool | None = None
    source_override: str | None = None

    @model_validator(mode="after")
    def _override_only_on_mismatch(self) -> BaselineModelInfo:
        if self.matches_pack_source is False and not (self.source_override or "").strip():
            raise ValueError("a baseline that differs from the pack's source needs sourceOverride (the signed reason)")
        if self.source_override is not None and self.matches_pack_source is not False:
            raise ValueError("sourceOverride is only for a baseline that differs from the pack's source")
        return self


class BaselineResult(_Model):
    model: BaselineModelInfo
    result: PerplexityResult


class Measurement(_Model):
    """The acceptance test: perplexity of the pack (and of the baseline) on the carried tokens."""

    method: str
    dataset: DatasetInfo
    seq_len: int = Field(ge=2)
    max_windows: int | None = Field(default=None, ge=1)
    windows: int = Field(ge=1)
    pack: PerplexityResult
    baseline: BaselineResult | None = None
    ratio: float | None = Field(default=None, description="pack perplexity / baseline perplexity")
    ratio_hex: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Measurement:
        if len(self.pack.window_nll) != self.windows:
            raise ValueError("windows differs from the number of per-window NLLs")
        if self.pack.predicted_tokens != self.windows * (self.seq_len - 1):
            raise ValueError(f"pack.predictedTokens {self.pack.predicted_tokens} is not windows x (seqLen - 1) = {self.windows * (self.seq_len - 1)}")
        if self.baseline is None:
            if self.ratio is not None or self.ratio_hex is not None:
                raise ValueError("a ratio needs a baseline")
        else:
            if self.ratio is None or self.ratio_hex is None:
                raise ValueError("a baseline needs a ratio and ratioHex")
            _same_float(self.ratio, self.ratio_hex, "ratio")
            base = self.baseline.result
            if len(base.window_nll) != self.windows or base.predicted_tokens != self.pack.predicted_tokens:
                raise ValueError("the baseline was not measured on the same windows as the pack")
            expected = self.pack.perplexity / base.perplexity
            if self.ratio != expected:  # one IEEE division: exact
                raise ValueError(f"ratio {self.ratio!r} is not pack / baseline perplexity = {expected!r}")
        return self


class AcceptanceTestPredicate(_Model):
    """The predicate of an acceptance-test attestation (see docs/ATTESTATION.md for every field)."""

    tool: ToolInfo
    pack: PackInfo
    measurement: Measurement
    environment: EnvironmentInfo
    signed_at: AwareDatetime
    expires_at: AwareDatetime

    @field_validator("signed_at", "expires_at")
    @classmethod
    def _utc(cls, v: datetime) -> datetime:
        return v.astimezone(timezone.utc)

    @model_validator(mode="after")
    def _window(self) -> AcceptanceTestPredicate:
        if self.expires_at <= self.signed_at:
            raise ValueError("expiresAt must be after signedAt")
        return self

    def to_json_dict(self) -> dict[str, object]:
        """The predicate as JSON-ready data with camelCase keys."""
        return self.model_dump(by_alias=True, mode="json")
