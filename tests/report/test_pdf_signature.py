"""The PAdES signature on the report: made with either algorithm, bound to the customer's key, covering the whole file."""

from __future__ import annotations

import io

import pytest
from support.report_samples import make_results, sample_bundle

from uc_attest._internal.attest.certificates import self_signed_certificate
from uc_attest._internal.attest.keys import Algorithm, generate_private_key
from uc_attest._internal.report import BUNDLE_ATTACHMENT, render_report_bytes
from uc_attest._internal.report.pdf_signature import check_pdf_signature, sign_pdf
from uc_attest._internal.report.signed_layout import LayoutError, read_report_layout


def _check(signed: bytes, public_key):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN202
    update = read_report_layout(signed).signature
    assert update is not None
    return check_pdf_signature(signed, update, public_key)


@pytest.fixture(scope="module")
def rendered() -> bytes:
    return render_report_bytes(make_results("PASS"), {BUNDLE_ATTACHMENT: sample_bundle()})


@pytest.mark.parametrize("algorithm", list(Algorithm))
def test_signed_pdf_keeps_the_rendering_as_prefix_and_verifies(rendered: bytes, algorithm: Algorithm) -> None:
    key = generate_private_key(algorithm)
    signed = sign_pdf(rendered, key, self_signed_certificate(key, "Example Hospital"), reason="test")
    assert signed.startswith(rendered) and len(signed) > len(rendered)
    check = _check(signed, key.public_key())
    assert "O=Example Hospital" in check.signer_subject and check.signing_time is not None
    with pytest.raises(ValueError, match="another key"):
        _check(signed, generate_private_key(algorithm).public_key())


def test_unsigned_and_appended_reports_are_refused(rendered: bytes) -> None:
    from pyhanko.pdf_utils.generic import pdf_string
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter

    key = generate_private_key()
    assert read_report_layout(rendered).signature is None
    signed = sign_pdf(rendered, key, self_signed_certificate(key, "Example Hospital"), reason="test")
    writer = IncrementalPdfFileWriter(io.BytesIO(signed), strict=False)
    writer.trailer["/Info"]["/Title"] = pdf_string("REJECTED")
    writer.update_container(writer.trailer["/Info"])
    out = io.BytesIO()
    writer.write(out)
    with pytest.raises(LayoutError, match="3 revisions"):
        read_report_layout(out.getvalue())


def test_certificate_for_another_key_is_refused() -> None:
    from uc_attest._internal.attest.certificates import check_certificate_matches
    from uc_attest._internal.attest.errors import KeyFileError

    key, other = generate_private_key(), generate_private_key()
    with pytest.raises(KeyFileError, match="another key"):
        check_certificate_matches(self_signed_certificate(other, "Mallory"), key, "mallory.crt")
