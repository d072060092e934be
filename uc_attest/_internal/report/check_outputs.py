"""What ``attest check`` writes: results.json, the customer's signed verdict (VSA), the signed PDF.

All outputs are produced in memory first and written only when every one of
them could be made (each by temp file + rename), so a failed signature never
leaves a results file or report behind that looks complete. Signing order:
the VSA signs results.json's exact bytes; the report embeds those bytes and
the VSA; the rendered PDF is then signed as a PDF (PAdES) with the same key.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from ..attest.keys import PrivateKey
from ..check.results import Results
from ..errors import UsageError

VSA_SUFFIX = ".vsa.sigstore.json"


@dataclass(frozen=True)
class VerdictSigning:
    """How the customer signs its verdict: a key (file or PKCS#11) with a certificate for the PDF, or keyless."""

    key: PrivateKey | None = None
    certificate: x509.Certificate | None = None
    keyless: bool = False
    staging: bool = False

    @property
    def enabled(self) -> bool:
        return self.key is not None or self.keyless

    def describe(self) -> str:
        """One output line: who signs the verdict and how far its time can be trusted."""
        if self.keyless:
            return "verdict signature: Sigstore keyless (VSA); its time is the transparency log's"
        from ..attest.keys import fingerprint

        assert self.key is not None
        pdf = "; report PDF-signed (PAdES)" if self.certificate is not None else ""
        return f"verdict signature: key sha256:{fingerprint(self.key.public_key())} (VSA{pdf}); its time is the signer's own claim"


def default_vsa_path(json_path: Path | None, report_path: Path | None) -> Path:
    """``results.vsa.sigstore.json`` beside results.json (else beside the report)."""
    base = json_path or report_path
    if base is None:
        raise UsageError("signing the verdict needs --json or --report (the signature covers the results written there)")
    return base.with_name(base.stem + VSA_SUFFIX)


def sign_verdict(results: Results, results_bytes: bytes, bundle_bytes: bytes, signing: VerdictSigning) -> bytes:
    """The customer's VSA bundle over ``results_bytes`` (DSSE, key mode or keyless)."""
    from ..attest.signing import sign_statement
    from ..check.vsa import build_vsa_statement

    statement = build_vsa_statement(results, results_bytes, hashlib.sha256(bundle_bytes).hexdigest())
    if signing.key is not None:
        return sign_statement(statement, signing.key)
    from ..attest.keyless import sign_keyless

    return sign_keyless(statement.to_payload(), staging=signing.staging)


def build_check_outputs(
    results: Results,
    bundle_bytes: bytes,
    *,
    json_path: Path | None,
    report_path: Path | None,
    vsa_path: Path | None,
    signing: VerdictSigning,
) -> dict[Path, bytes]:
    """Every output file's bytes, by path (nothing is written here)."""
    results_bytes = results.to_json_bytes()
    outputs: dict[Path, bytes] = {}
    if json_path is not None:
        outputs[json_path] = results_bytes
    attachments: dict[str, bytes] = {}
    from .names import BUNDLE_ATTACHMENT, VSA_ATTACHMENT

    attachments[BUNDLE_ATTACHMENT] = bundle_bytes
    if signing.enabled:
        vsa = sign_verdict(results, results_bytes, bundle_bytes, signing)
        outputs[vsa_path or default_vsa_path(json_path, report_path)] = vsa
        attachments[VSA_ATTACHMENT] = vsa
    if report_path is not None:
        from .render import render_report_bytes

        pdf = render_report_bytes(results, attachments)
        if signing.key is not None and signing.certificate is not None:
            from .pdf_signature import sign_pdf

            pdf = sign_pdf(pdf, signing.key, signing.certificate, reason=f"Acceptance check verdict {results.verdict.value} (policy {results.policy.name})")
        outputs[report_path] = pdf
    return outputs


def write_outputs(outputs: dict[Path, bytes]) -> None:
    """Write every output or none (uc_attest._internal.outputs.write_all: staged, then renamed; restored on failure)."""
    from ..outputs import Output, write_all

    write_all([Output(path, data) for path, data in outputs.items()])
