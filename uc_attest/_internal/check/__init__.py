"""The customer's check: named checks with evidence, and the results they add up to.

Only the results model is imported here; the check itself (run.py, one module
per named check beside it; it pulls in torch) is imported explicitly from
:mod:`uc_attest._internal.check.run` by whoever runs it.
"""

from .results import (
    ArtifactIdentity,
    BlockSummary,
    CheckResult,
    CheckStatus,
    Digests,
    Environment,
    Environments,
    FileCheck,
    PerplexityComparison,
    PerplexityMeasurement,
    PolicyRecord,
    Reconstruction,
    Results,
    SignerIdentity,
    TensorCheck,
    ToolInfo,
    Verdict,
    block_label,
    derive_verdict,
    load_results,
    summarize_blocks,
    verdict_reasons,
)

__all__ = [
    "ArtifactIdentity",
    "BlockSummary",
    "CheckResult",
    "CheckStatus",
    "Digests",
    "Environment",
    "Environments",
    "FileCheck",
    "PerplexityComparison",
    "PerplexityMeasurement",
    "PolicyRecord",
    "Reconstruction",
    "Results",
    "SignerIdentity",
    "TensorCheck",
    "ToolInfo",
    "Verdict",
    "block_label",
    "derive_verdict",
    "load_results",
    "summarize_blocks",
    "verdict_reasons",
]
