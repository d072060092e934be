"""The PAdES signature on the report: made with either algorithm, bound to the customer's key, covering the whole file."""

from __future__ import annotations

import io

import pytest
from support.report_samples import make_results, sample_bundle

from uc_attest.attest.certificates import self_signed_certificate
from uc_attest.attest.keys import Algorithm, generate_private_key
from uc_attest.report import BUNDLE_ATTACHMENT, render_report_bytes
from uc_attest.report.pdf_signature import check_pdf_signature, sign_pdf


@pytest.fixture(scope="module")
def rendered() -> bytes:
    return render_report_bytes(make_results("PASS"), {BUNDLE_ATTACHMENT: sample_bundle()})


@pytest.mark.parametrize("algorithm", list(Algorithm))
def test_signed_pdf_keeps_the_rendering_as_prefix_and_verifies(rendered: bytes, algorithm: Algorithm) -> None:
    key = generate_private_key(algorithm)
    signed = sign_pdf(rendered, key, self_signed_certificate(key, "Example Hospital"), reason="test")
    assert signed.startswith(rendered) and len(signed) > len(rendered)
    check = check_pdf_signature(signed, key.public_key(), "report.pdf")
    assert "O=Example Hospital" in check.signer_subject and check.signing_time is not None
    with pytest.raises(ValueError, match="another key"):
        check_pdf_signature(signed, generate_private_key(algorithm).public_key(), "report.pdf")


def test_unsigned_and_appended_reports_are_refused(rendered: bytes) -> None:
    from pyhanko.pdf_utils.generic import pdf_string
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter

    key = generate_private_key()
    with pytest.raises(ValueError, match="0 signatures"):
        check_pdf_signature(rendered, key.public_key(), "report.pdf")
    signed = sign_pdf(rendered, key, self_signed_certificate(key, "Example Hospital"), reason="test")
    writer = IncrementalPdfFileWriter(io.BytesIO(signed), strict=False)
    writer.trailer["/Info"]["/Title"] = pdf_string("REJECTED")
    writer.update_container(writer.trailer["/Info"])
    out = io.BytesIO()
    writer.write(out)
    with pytest.raises(ValueError, match="does not cover the whole file"):
        check_pdf_signature(out.getvalue(), key.public_key(), "report.pdf")


def test_certificate_for_another_key_is_refused() -> None:
    from uc_attest.attest.certificates import check_certificate_matches
    from uc_attest.attest.errors import KeyFileError

    key, other = generate_private_key(), generate_private_key()
    with pytest.raises(KeyFileError, match="another key"):
        check_certificate_matches(self_signed_certificate(other, "Mallory"), key, "mallory.crt")
