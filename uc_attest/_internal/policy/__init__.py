"""Customer policies: which signers, how old, how exact (see docs/POLICY.md)."""

from .loader import LoadedPolicy, load_policy, parse_policy, resolve_policy_path
from .model import (
    AttestationPolicy,
    PerplexityPolicy,
    Policy,
    SignerPolicy,
    WeightsPolicy,
    normalize_fingerprint,
)
from .resources import policies_dir, shipped_policy_names

__all__ = [
    "AttestationPolicy",
    "LoadedPolicy",
    "PerplexityPolicy",
    "Policy",
    "SignerPolicy",
    "WeightsPolicy",
    "load_policy",
    "normalize_fingerprint",
    "parse_policy",
    "policies_dir",
    "resolve_policy_path",
    "shipped_policy_names",
]
