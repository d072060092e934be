"""uc_attest: compressed LLM packs whose reconstruction is bit-exact, signed and checked air-gapped.

This module is the whole public Python API; ``__all__`` is its closed list. A
vendor compresses and signs, a customer verifies, loads and checks, an auditor
re-verifies a report::

    import uc_attest

    uc_attest.compress_model("model/", "model.ucpack", uc_attest.CompressOptions(bits=5))
    uc_attest.generate_keypair("vendor")
    uc_attest.sign_pack("model.ucpack", "vendor.key", baseline="model/")

    vendor = uc_attest.KeyAnchor("vendor.pub")
    statement = uc_attest.verify_bundle("model.ucpack.sigstore.json", vendor)
    verified = uc_attest.verify_pack("model.ucpack")          # raises VerificationError unless every byte matches
    model = uc_attest.load_model(verified)                    # a transformers model, the canonical reconstruction
    results = uc_attest.check_pack("model.ucpack", vendor)    # results.verdict: PASS or FAIL under the policy

Every error is a :class:`UcError` with ``exit_code`` (1: a verification failed,
2: unusable input), the same contract as the ``uc`` and ``attest`` commands,
which are the other public face (also as ``python -m uc_attest uc|attest|demo``).
Everything under ``uc_attest._internal`` is private and may move in any release.

Why lazy: ``import uc_attest`` must stay cheap (no torch, no transformers,
no cryptography) for a script that only asks for the version or catches an
error type; each name is imported from its module on first use.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from ._internal.errors import UcError, UnreadableInputError, UsageError, VerificationError
from ._internal.version import __version__

if TYPE_CHECKING:
    from ._internal.api import check_pack, compress_model, generate_keypair, load_model, sign_pack, verify_bundle, verify_pack, verify_report
    from ._internal.attest.acceptance import SignResult
    from ._internal.attest.errors import AttestationError
    from ._internal.attest.trust import KeyAnchor, KeylessAnchor, TrustAnchor
    from ._internal.attest.verify import VerifiedAttestation
    from ._internal.check.results import Results
    from ._internal.compress.options import CompressOptions
    from ._internal.pack.manifest import PackManifest
    from ._internal.pack.verified import VerifiedPack
    from ._internal.report.verify import ReportVerification

_LAZY: dict[str, str] = {
    # what a vendor, a customer and an auditor call
    "compress_model": "api",
    "verify_pack": "api",
    "load_model": "api",
    "generate_keypair": "api",
    "sign_pack": "api",
    "verify_bundle": "api",
    "check_pack": "api",
    "verify_report": "api",
    # the trust anchors those calls take
    "KeyAnchor": "attest.trust",
    "KeylessAnchor": "attest.trust",
    "TrustAnchor": "attest.trust",
    # what they take and return
    "CompressOptions": "compress.options",
    "PackManifest": "pack.manifest",
    "VerifiedPack": "pack.verified",
    "SignResult": "attest.acceptance",
    "VerifiedAttestation": "attest.verify",
    "Results": "check.results",
    "ReportVerification": "report.verify",
    # the one error of the attestation layer a caller may want apart from VerificationError
    "AttestationError": "attest.errors",
}
"""Public name -> the module under uc_attest._internal that defines it today (the one place a move is recorded)."""

__all__ = [
    "AttestationError",
    "CompressOptions",
    "KeyAnchor",
    "KeylessAnchor",
    "PackManifest",
    "ReportVerification",
    "Results",
    "SignResult",
    "TrustAnchor",
    "UcError",
    "UnreadableInputError",
    "UsageError",
    "VerificationError",
    "VerifiedAttestation",
    "VerifiedPack",
    "__version__",
    "check_pack",
    "compress_model",
    "generate_keypair",
    "load_model",
    "sign_pack",
    "verify_bundle",
    "verify_pack",
    "verify_report",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'uc_attest' has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}._internal.{module}"), name)
    globals()[name] = value  # resolved once
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
