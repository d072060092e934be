"""The policy file as a pydantic model: what a customer accepts, written down once.

A policy is a decision made by the customer, not by the vendor, so it lives in
a file the customer controls and whose digest is recorded in every result.
The model is strict on purpose: an unknown key is almost always a typo
(``max_age_day``) that would otherwise silently weaken a check, and a string
where a number belongs must not be coerced. Every field is documented in
docs/POLICY.md; keep the two in step.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    model_validator,
)


# Every number a policy holds has a finite, sane range: TOML accepts inf, nan and
# 1e308, and a tolerance of 1e308 or an age limit of inf switches a check off
# without a word. The bounds are wide enough for any real use and say so in
# docs/POLICY.md; a policy that wants a check off says so with its boolean.
MAX_AGE_DAYS = 3650.0  # ten years: any older attestation predates the model it describes
MAX_CLOCK_SKEW_SECONDS = 7 * 86400  # a week: beyond that the signing time means nothing
MAX_ABSOLUTE_TOLERANCE = 10.0  # perplexity units; a language model's perplexity is a few to a few tens
MAX_RATIO_TO_BASELINE = 10.0  # ten times the original's perplexity is a broken model, not a compressed one

_FINGERPRINT = re.compile(r"^(?:sha256:)?([0-9a-fA-F]{64})$")


def normalize_fingerprint(value: str) -> str:
    """Return a key fingerprint as 64 lowercase hex digits.

    A fingerprint is the SHA-256 of the public key's DER SubjectPublicKeyInfo.
    People copy them from tools that print ``sha256:ABCD...`` or upper case, so
    both spellings are accepted and compared in one canonical form.
    """
    match = _FINGERPRINT.match(value.strip())
    if not match:
        raise ValueError("a key fingerprint is 64 hex digits (SHA-256 of the DER public key), optionally prefixed 'sha256:'")
    return match.group(1).lower()


Fingerprint = Annotated[str, AfterValidator(normalize_fingerprint)]


class _Section(BaseModel):
    """Base of every policy table: unknown keys and type coercion are errors."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class SignerPolicy(_Section):
    """Who may sign an acceptance test that this customer accepts."""

    allow_key: bool = True
    allow_keyless: bool = True
    key_fingerprints: list[Fingerprint] = Field(default_factory=list)
    revoked_key_fingerprints: list[Fingerprint] = Field(default_factory=list)
    identities: list[str] = Field(default_factory=list)
    issuers: list[str] = Field(default_factory=list)
    valid_from: AwareDatetime | None = None
    valid_until: AwareDatetime | None = None

    @model_validator(mode="after")
    def _coherent(self) -> SignerPolicy:
        if not (self.allow_key or self.allow_keyless):
            raise ValueError("signer: allow_key and allow_keyless cannot both be false (nothing could pass)")
        if self.valid_from and self.valid_until and self.valid_from >= self.valid_until:
            raise ValueError("signer: valid_from must be earlier than valid_until")
        if not self.allow_key and self.key_fingerprints:
            raise ValueError("signer.key_fingerprints lists keys that signer.allow_key = false refuses")
        if not self.allow_keyless and (self.identities or self.issuers):
            raise ValueError("signer.identities/issuers list keyless signers that signer.allow_keyless = false refuses")
        both = set(self.key_fingerprints) & set(self.revoked_key_fingerprints)
        if both:
            raise ValueError(f"signer: fingerprint both allowed and revoked: {sorted(both)[0]}")
        return self


class AttestationPolicy(_Section):
    """How old an attestation may be, and whether its own expiry is honoured."""

    max_age_days: float | None = Field(default=None, gt=0, le=MAX_AGE_DAYS, allow_inf_nan=False)
    honour_expiry: bool = True
    max_clock_skew_seconds: int = Field(default=300, ge=0, le=MAX_CLOCK_SKEW_SECONDS)


class WeightsPolicy(_Section):
    """What the customer demands of the pack's files and reconstructed weights."""

    require_bit_exact: bool = True
    allow_unattested_files: bool = False


class PerplexityPolicy(_Section):
    """How the re-measured quality figure is compared with the attested one.

    The measured value passes when ``|measured - attested| <= max(absolute_tolerance,
    relative_tolerance * attested)``; with both tolerances 0 the two float64
    values must be identical bit for bit.
    """

    remeasure: bool = True
    required: bool = True
    relative_tolerance: float = Field(default=0.0, ge=0, lt=1, allow_inf_nan=False)
    absolute_tolerance: float = Field(default=0.0, ge=0, le=MAX_ABSOLUTE_TOLERANCE, allow_inf_nan=False)
    max_ratio_to_baseline: float | None = Field(default=None, ge=1, le=MAX_RATIO_TO_BASELINE, allow_inf_nan=False)

    @model_validator(mode="after")
    def _coherent(self) -> PerplexityPolicy:
        # "required" of a measurement that is never made would be silently dropped: refuse the pair
        if not self.remeasure and self.required and "required" in self.model_fields_set:
            raise ValueError("perplexity.required = true contradicts perplexity.remeasure = false (nothing would be measured)")
        return self

    @property
    def exact(self) -> bool:
        """Both tolerances zero: only bit-identical perplexities pass."""
        return self.relative_tolerance == 0 and self.absolute_tolerance == 0


class VerdictPolicy(_Section):
    """Whether the customer's own verdict must be signed (``attest check --sign-key`` or ``--sign-sigstore``).

    An unsigned verdict is not evidence (anyone who can edit the file can
    change it); a policy for audited deployments can refuse to produce one.
    """

    require_signature: bool = False


MAX_PROBE_WINDOW_TOLERANCE = 1.0  # nats per predicted token: a mean shift of one nat per token is another model, not another kernel
MAX_PROBE_TOTAL_TOLERANCE = 0.5  # perplexity half again as high is another model


class ProbePolicy(_Section):
    """How ``attest probe`` judges a live endpoint's log-probabilities on the signed windows.

    A serving engine's kernels (another summation order, bf16 or fp16 compute,
    fused attention) are not the vendor's float32 transformers forward, so the
    served NLL of a window differs from the signed one by a little even when the
    weights are identical. Two tolerances bound "a little": per window, the mean
    difference per predicted token (nats); over all probed windows, the relative
    difference of the perplexity. A share of windows may exceed the per-window
    tolerance (outliers of a kernel), but never the total one.

    The defaults sit between what a kernel moves and what other weights move, both
    measured on SmolLM2 (docs/RESULTS.md, "Probing a live endpoint"): bf16 serving of
    the attested weights shifts a window by at most 0.0067 nats per token and the
    perplexity by 0.09-0.11 %; the unquantised original behind the same endpoint,
    once the pack is within 1 % of it (``--target-bpw 5.3``), shifts the perplexity
    by 0.67 %. As packs get closer to their originals, this margin is what shrinks.
    """

    required: bool = True
    window_tolerance: float = Field(default=0.012, gt=0, le=MAX_PROBE_WINDOW_TOLERANCE, allow_inf_nan=False)
    total_tolerance: float = Field(default=0.004, gt=0, le=MAX_PROBE_TOTAL_TOLERANCE, allow_inf_nan=False)
    max_share_outside: float = Field(default=0.1, ge=0, lt=1, allow_inf_nan=False)
    min_windows: int = Field(default=8, ge=1, le=100_000)
    text_windows: int = Field(default=2, ge=1, le=1000)


class Policy(_Section):
    """A whole policy file. ``version`` guards against a future incompatible format."""

    version: Literal[1]
    name: str = Field(min_length=1, max_length=80)
    description: str = ""
    signer: SignerPolicy = Field(default_factory=SignerPolicy)
    attestation: AttestationPolicy = Field(default_factory=AttestationPolicy)
    weights: WeightsPolicy = Field(default_factory=WeightsPolicy)
    perplexity: PerplexityPolicy = Field(default_factory=PerplexityPolicy)
    verdict: VerdictPolicy = Field(default_factory=VerdictPolicy)
    probe: ProbePolicy = Field(default_factory=ProbePolicy)
