"""The report's fixed names: its attachments and its content-derived identifier.

A leaf module (it imports nothing of the package) so that rendering, the
page-1 signature box, the view and the verifier share one spelling of each
name without importing one another in a circle.
"""

from __future__ import annotations

import hashlib

RESULTS_ATTACHMENT = "results.json"
BUNDLE_ATTACHMENT = "attestation.sigstore.json"
POLICY_ATTACHMENT = "policy.toml"
VSA_ATTACHMENT = "verdict.sigstore.json"
REPORT_ATTACHMENTS = frozenset({RESULTS_ATTACHMENT, BUNDLE_ATTACHMENT, POLICY_ATTACHMENT, VSA_ATTACHMENT})
"""The closed set of files a report may embed."""


def report_identifier(attachments: dict[str, bytes]) -> str:
    """A content-derived document identifier: SHA-256 over the names and digests of the attachments."""
    h = hashlib.sha256(b"uc-attest/report-id/v1\n")
    for name, data in sorted(attachments.items()):
        h.update(f"{name}\n{hashlib.sha256(data).hexdigest()}\n".encode())
    return h.hexdigest()
