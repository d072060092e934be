"""The PDF report: PDF/A-3b structure, embedded fonts and files, reproducible bytes, wording for auditors."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pikepdf
import pytest
from support.paths import REPO, child_env
from support.report_samples import make_results, sample_bundle

from uc_attest._internal.check.results import Results
from uc_attest._internal.errors import UsageError
from uc_attest._internal.report import (
    BUNDLE_ATTACHMENT,
    POLICY_ATTACHMENT,
    RESULTS_ATTACHMENT,
    render_html,
    render_report,
    render_report_bytes,
)
from uc_attest._internal.report.chart import window_diff_svg
from uc_attest._internal.report.names import report_identifier


@pytest.fixture(scope="module")
def pass_pdf() -> bytes:
    return render_report_bytes(make_results("PASS"), {BUNDLE_ATTACHMENT: sample_bundle()})


@pytest.fixture(scope="module")
def fail_pdf() -> bytes:
    return render_report_bytes(make_results("FAIL"), {BUNDLE_ATTACHMENT: sample_bundle()})


def _open(data: bytes) -> pikepdf.Pdf:
    return pikepdf.open(io.BytesIO(data))


def test_opens_cleanly_and_claims_pdfa_3b(pass_pdf: bytes) -> None:
    with _open(pass_pdf) as pdf:
        assert pdf.check_pdf_syntax() == []
        assert len(pdf.pages) >= 4
        meta = pdf.open_metadata()
        assert meta["pdfaid:part"] == "3"
        assert meta["pdfaid:conformance"] == "B"
        assert meta["dc:title"] == "Acceptance-test audit report: SmolLM2-135M (PASS)"
        assert meta["xmp:CreateDate"] == "2025-04-14T16:02:45Z"
        intents = pdf.Root.OutputIntents
        assert len(intents) == 1 and intents[0].S == "/GTS_PDFA1" and "/DestOutputProfile" in intents[0]


def test_document_metadata_comes_from_the_results(pass_pdf: bytes) -> None:
    results = make_results("PASS")
    with _open(pass_pdf) as pdf:
        info = pdf.docinfo
        assert str(info.Title).endswith("(PASS)")
        assert str(info.Author) == "uc_attest 0.1.0"
        assert results.artifact.pack_manifest_sha256 in str(info.Subject)
        assert str(info.CreationDate).startswith("D:20250414160245")
        assert str(info.ModDate) == str(info.CreationDate)


def test_every_font_is_embedded_and_ours(pass_pdf: bytes) -> None:
    seen = set()
    with _open(pass_pdf) as pdf:
        for page in pdf.pages:
            for _name, font in page.Resources.get("/Font", {}).items():
                descendant = font.DescendantFonts[0] if "/DescendantFonts" in font else font
                descriptor = descendant.FontDescriptor
                assert any(k in descriptor for k in ("/FontFile", "/FontFile2", "/FontFile3")), font.BaseFont
                seen.add(str(font.BaseFont).split("+", 1)[-1])
    assert seen and all(name.startswith("Report") for name in seen), seen


def test_attachments_come_back_out_unchanged(pass_pdf: bytes) -> None:
    results = make_results("PASS")
    expected = {
        RESULTS_ATTACHMENT: results.to_json_bytes(),
        BUNDLE_ATTACHMENT: sample_bundle(),
        POLICY_ATTACHMENT: (REPO / "policies" / "default.toml").read_bytes(),
    }
    with _open(pass_pdf) as pdf:
        got = {name: spec.get_file().read_bytes() for name, spec in pdf.attachments.items()}
        assert got == expected
        associated = {str(spec.F) for spec in pdf.Root.AF}
        assert associated == set(expected)
        relationships = {str(spec.F): str(spec.AFRelationship) for spec in pdf.Root.AF}
        assert relationships == {RESULTS_ATTACHMENT: "/Data", BUNDLE_ATTACHMENT: "/Source", POLICY_ATTACHMENT: "/Supplement"}
        assert pdf.attachments[POLICY_ATTACHMENT].get_file().mime_type == "application/toml"
        assert bytes(pdf.trailer.ID[0]) == report_identifier(expected)[:32].encode()


def test_two_renders_are_byte_identical(pass_pdf: bytes) -> None:
    assert render_report_bytes(make_results("PASS"), {BUNDLE_ATTACHMENT: sample_bundle()}) == pass_pdf


def test_another_process_renders_the_same_bytes(pass_pdf: bytes) -> None:
    code = (
        "import hashlib;"
        "from support.report_samples import make_results, sample_bundle;"
        "from uc_attest._internal.report import render_report_bytes;"
        "print(hashlib.sha256(render_report_bytes(make_results('PASS'), {'attestation.sigstore.json': sample_bundle()})).hexdigest())"
    )
    env = child_env({"PYTHONHASHSEED": "12345", "SOURCE_DATE_EPOCH": "1"})
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == hashlib.sha256(pass_pdf).hexdigest()


def test_rendering_leaves_the_process_as_it_was(pass_pdf: bytes) -> None:
    from weasyprint.pdf import fonts

    before = (os.environ.get("SOURCE_DATE_EPOCH"), fonts.harfbuzz_subset)
    render_report_bytes(make_results("PASS"))
    assert (os.environ.get("SOURCE_DATE_EPOCH"), fonts.harfbuzz_subset) == before


def test_fail_report_is_written_and_differs(pass_pdf: bytes, fail_pdf: bytes) -> None:
    assert fail_pdf != pass_pdf
    with _open(fail_pdf) as pdf:
        assert pdf.open_metadata()["dc:title"].endswith("(FAIL)")
        got = pdf.attachments[RESULTS_ATTACHMENT].get_file().read_bytes()
        assert got == make_results("FAIL").to_json_bytes()


def test_first_page_wording_for_a_failure() -> None:
    results = make_results("FAIL")
    html = render_html(results, {BUNDLE_ATTACHMENT: sample_bundle()})
    first_page = html.split("1. Checks performed")[0]
    assert "FAIL" in first_page and "must not be accepted" in first_page
    assert "tensors/model-00002-of-00002.safetensors" in first_page
    assert "model.layers.7.mlp.down_proj.weight" in first_page
    for fact in (results.artifact.pack_manifest_sha256, results.artifact.signer.key_fingerprint, "2025-03-03 09:30:12 UTC", results.policy.sha256):
        assert fact and fact in first_page
    assert "Rebuilt weights must be bit-for-bit identical" in first_page


def test_body_and_appendices(pass_results: Results) -> None:
    html = render_html(pass_results, {BUNDLE_ATTACHMENT: sample_bundle()})
    assert html.count("<svg") == 1 and "evaluation window (1 to 40)" in html
    for f in pass_results.files:
        assert f"{f.sha256}  {f.path}" in html  # sha256sum -c lines
    assert "attest verify-report report.pdf --key vendor.pub" in html
    assert f"{hashlib.sha256(sample_bundle()).hexdigest()}  {BUNDLE_ATTACHMENT}" in html
    assert "Intel(R) Xeon(R) Gold 6338" in html and "AMD EPYC 9454" in html
    assert "model.layers.29" in html and "[perplexity]" in html


def test_without_bundle_the_report_says_so(pass_results: Results) -> None:
    html = render_html(pass_results, {})
    assert "not\n    embedded in this rendering" in html or "not embedded in this rendering" in " ".join(html.split())


def test_refuses_attachments_that_do_not_belong(pass_results: Results, tmp_path: Path) -> None:
    out = tmp_path / "r.pdf"
    with pytest.raises(UsageError, match="bundle does not belong"):
        render_report(pass_results, {BUNDLE_ATTACHMENT: sample_bundle() + b" "}, out)
    with pytest.raises(UsageError, match="policy file does not match"):
        render_report(pass_results, {POLICY_ATTACHMENT: b"version = 1\n"}, out)
    with pytest.raises(UsageError, match="differs from the results"):
        render_report(pass_results, {RESULTS_ATTACHMENT: b"{}"}, out)
    with pytest.raises(UsageError, match="output directory does not exist"):
        render_report(pass_results, {}, tmp_path / "missing" / "r.pdf")
    assert list(tmp_path.iterdir()) == []


def test_chart_is_deterministic_and_handles_edge_cases() -> None:
    diffs = [0.0, 1e-6, -2e-6, 0.0]
    assert window_diff_svg(diffs) == window_diff_svg(list(diffs))
    assert "every window identical" in window_diff_svg([0.0] * 5)
    assert "no per-window data" in window_diff_svg([])
    svg = window_diff_svg([float("nan"), 0.5, -0.25])
    assert svg.count("<rect") == 3  # frame + two bars; NaN drawn as nothing


def test_keyless_signer_is_shown_with_its_issuer() -> None:
    results = make_results("PASS")
    data = results.model_dump(mode="json")
    data["artifact"]["signer"] = {"mode": "keyless", "identity": "release@vendor.example", "issuer": "https://accounts.google.com"}
    keyless = Results.model_validate(data)
    html = " ".join(render_html(keyless, {}).split())
    assert "release@vendor.example" in html and "identity vouched for by https://accounts.google.com" in html
    assert "--trusted-root trusted_root.json --identity release@vendor.example --issuer https://accounts.google.com" in html
