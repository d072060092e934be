"""Issue 26: a signed report is one revision, bound to one pack, verifiable with another renderer.

Each class of forgery is built here with pyHanko, pikepdf or byte-level
writes on a genuine customer-signed report, and each must end ``REPORT: NOT
VERIFIED`` (exit 1) with a line that says what was found, and never a
traceback on stderr.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
from pathlib import Path

import pytest
from support.signed_report import attest, verify

from uc_attest._internal.report import RESULTS_ATTACHMENT
from uc_attest._internal.report.signed_layout import read_report_layout

pytestmark = pytest.mark.slow  # the shared signed delivery, checked and signed by the customer (tests/report/conftest.py)


@pytest.fixture
def site(checked: Path, tmp_path: Path) -> Path:  # the session fixture of tests/report/conftest.py, on a private copy
    dest = tmp_path / "site"
    shutil.copytree(checked, dest)
    return dest


def refused(site: Path, data: bytes, why: str) -> str:
    """Write ``data`` as a report, verify it, and require NOT VERIFIED naming ``why`` (a regex), stderr at most one line."""
    (site / "forged.pdf").write_bytes(data)
    rc, out, err = verify(site, site / "forged.pdf")
    assert rc == 1, out + err
    assert out.rstrip().endswith("REPORT: NOT VERIFIED"), out
    assert re.search(why, out), out
    assert "Traceback" not in err and err.count("\n") <= 1, err
    return out


def _signature(data: bytes):  # type: ignore[no-untyped-def]  # noqa: ANN202
    layout = read_report_layout(data)
    assert layout.signature is not None
    return layout.signature


def _literal(raw: bytes) -> bytes:
    return b"(" + raw.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)").replace(b"\r", b"\\r").replace(b"\n", b"\\n") + b")"


def _append_update(data: bytes, objects: dict[int, bytes], size: int, root: bytes = b"2 0 R") -> bytes:
    """A hand-written incremental update (classic xref table) redefining ``objects``."""
    out = bytearray(data)
    offsets = {}
    for num, body in objects.items():
        offsets[num] = len(out)
        out += b"%d 0 obj\n" % num + body + b"\nendobj\n"
    prev = int(re.findall(rb"startxref\s+(\d+)", data)[-1])
    xref = len(out)
    out += b"xref\n0 1\n0000000000 65535 f \n"
    for num, offset in offsets.items():
        out += b"%d 1\n%010d 00000 n \n" % (num, offset)
    out += b"trailer\n<< /Size %d /Root %s /Prev %d >>\nstartxref\n%d\n%%%%EOF\n" % (size, root, prev, xref)
    return bytes(out)


def test_padded_literal_redefinition_of_the_signature_is_refused(site: Path) -> None:
    """The campaign's attack: paint PASS over page 1, redefine the signature dictionary with the same
    /ByteRange and CMS as a NUL-padded literal string so the sizes balance."""
    import pikepdf

    data = (site / "report.pdf").read_bytes()
    sig = _signature(data)
    with pikepdf.open(io.BytesIO(data)) as pdf:
        page = pdf.pages[0].obj
        page_num, size = page.objgen[0], int(pdf.trailer.Size)
        page_text = bytes(page.unparse(resolved=True))
        contents = bytes(page.Contents.unparse())
    _zero, a, b, c = sig.byte_range
    padded = sig.cms + b"\x00" * ((b - a - 2) // 2 - len(sig.cms))
    paint = b"q 0 0.6 0 rg 40 700 500 80 re f BT 1 1 1 rg /F1 48 Tf 60 720 Td (VERDICT PASS) Tj ET Q"
    new_stream = b"<< /Length %d >>\nstream\n%s\nendstream" % (len(paint), paint)
    sig_dict = (
        b"<< /Type /Sig /Filter /Adobe.PPKLite /SubFilter /ETSI.CAdES.detached /ByteRange [0 %d %d %d] /Contents %s >>"
        % (a, b, c, _literal(padded))
    )
    painted_page = page_text.replace(b"/Contents " + contents, b"/Contents [ " + contents + b" %d 0 R ]" % size)
    assert painted_page != page_text
    objects = {sig.signature_object: sig_dict, page_num: painted_page, size: new_stream}
    forged = _append_update(data, objects, size + 1)
    with pikepdf.open(io.BytesIO(forged)) as pdf:  # a viewer sees the painted page and the redefined signature
        assert len(pdf.pages[0].Contents) == 2 and bytes(pdf.Root.AcroForm.Fields[0].V.Contents) == padded
    out = refused(site, forged, r"structure: .*cross-reference table")
    assert "ok    PDF signature" not in out


def _pyhanko_update(data: bytes, change) -> bytes:  # type: ignore[no-untyped-def]  # noqa: ANN001
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter

    writer = IncrementalPdfFileWriter(io.BytesIO(data), strict=False)
    change(writer)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def test_later_revisions_of_every_kind_are_refused(site: Path) -> None:
    """Annotation, form field, painted page content, swapped attachment: each as a pyHanko incremental update."""
    from pyhanko.pdf_utils import generic

    data = (site / "report.pdf").read_bytes()

    def annotate(writer) -> None:  # type: ignore[no-untyped-def]  # noqa: ANN001
        page_ref = writer.find_page_for_modification(0)[0]
        page = page_ref.get_object()
        note = generic.DictionaryObject(
            {generic.NameObject("/Type"): generic.NameObject("/Annot"), generic.NameObject("/Subtype"): generic.NameObject("/FreeText"),
             generic.NameObject("/Rect"): generic.ArrayObject([generic.NumberObject(v) for v in (40, 700, 540, 780)]),
             generic.NameObject("/Contents"): generic.TextStringObject("VERDICT PASS")})  # fmt: skip
        annots = page.get("/Annots", generic.ArrayObject())
        annots.append(writer.add_object(note))
        page["/Annots"] = annots
        writer.update_container(page)

    def paint(writer) -> None:  # type: ignore[no-untyped-def]  # noqa: ANN001
        page = writer.find_page_for_modification(0)[0].get_object()
        stream = writer.add_object(generic.StreamObject(stream_data=b"q 0 0.6 0 rg 40 700 500 80 re f Q"))
        page["/Contents"] = generic.ArrayObject([page.raw_get("/Contents"), stream])
        writer.update_container(page)

    def swap_results(writer) -> None:  # type: ignore[no-untyped-def]  # noqa: ANN001
        names = writer.root["/Names"]["/EmbeddedFiles"]["/Names"]
        for i in range(0, len(names), 2):
            if str(names[i]) == RESULTS_ATTACHMENT:
                spec = names[i + 1].get_object()
                stream = generic.StreamObject({generic.NameObject("/Type"): generic.NameObject("/EmbeddedFile")}, stream_data=b'{"forged": true}')
                spec["/EF"] = generic.DictionaryObject({generic.NameObject("/F"): writer.add_object(stream)})
                writer.update_container(spec)

    for change in (annotate, paint, swap_results):
        refused(site, _pyhanko_update(data, change), r"structure: the file has 3 revisions: after the rendered report and its one signature update, 1 more update")


def test_second_trailer_and_trailing_bytes_are_refused(site: Path) -> None:
    data = (site / "report.pdf").read_bytes()
    prev = int(re.findall(rb"startxref\s+(\d+)", data)[-1])
    refused(site, data + b"trailer\n<< /Size 1 /Prev %d >>\nstartxref\n%d\n%%%%EOF\n" % (prev, len(data)), r"structure: (no cross-reference stream|.*table)")
    refused(site, data + b"\n", r"structure: 1 byte\(s\) follow the last %%EOF and its end of line")
    refused(site, data + b"% a comment after the signature\n", r"structure: .* byte\(s\) follow the last %%EOF")


def test_contents_must_be_the_signers_exact_hex(site: Path) -> None:
    """Bytes a signature does not cover: the /Contents hex. Case, padding and CMS re-encodings are all refused."""
    data = (site / "report.pdf").read_bytes()
    _zero, a, b, _c = _signature(data).byte_range
    lower = bytearray(data)
    position = a + 1 + next(i for i, ch in enumerate(data[a + 1 : b]) if chr(ch) in "ABCDEF")
    lower[position] = ord(chr(lower[position]).lower())
    refused(site, bytes(lower), r"structure: the signature's /Contents is not written as the signer writes it")
    padded = bytearray(data)
    padded[b - 2] = ord("1")  # the last padding digit: the CMS itself is unchanged
    refused(site, bytes(padded), r"structure: the signature's /Contents is not one canonical DER CMS object followed by zero bytes")


def _rewrite_cms(data: bytes, edit) -> bytes:  # type: ignore[no-untyped-def]  # noqa: ANN001
    from asn1crypto import cms

    sig = _signature(data)
    _zero, a, b, _c = sig.byte_range
    info = cms.ContentInfo.load(sig.cms)
    edit(info["content"])
    der = info.dump(force=True)
    hex_text = der.hex().upper().encode()
    hex_text += b"0" * (b - a - 2 - len(hex_text))
    return data[: a + 1] + hex_text + data[b - 1 :]


def test_malleated_and_extended_cms_are_refused(site: Path) -> None:
    """A still-valid ECDSA signature in high-s form, and an unsigned attribute added: both change bytes nobody signed."""
    from datetime import datetime, timezone

    from asn1crypto import cms
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

    from uc_attest._internal.report.pdf_signature import P256_ORDER

    data = (site / "report.pdf").read_bytes()

    def high_s(signed) -> None:  # type: ignore[no-untyped-def]  # noqa: ANN001
        r, s = decode_dss_signature(signed["signer_infos"][0]["signature"].native)
        signed["signer_infos"][0]["signature"] = encode_dss_signature(r, P256_ORDER - s)

    def unsigned_attribute(signed) -> None:  # type: ignore[no-untyped-def]  # noqa: ANN001
        when = cms.Time({"utc_time": datetime(2030, 1, 1, tzinfo=timezone.utc)})
        signed["signer_infos"][0]["unsigned_attrs"] = cms.CMSAttributes([cms.CMSAttribute({"type": "signing_time", "values": [when]})])

    refused(site, _rewrite_cms(data, high_s), r"PDF signature: the ECDSA signature in the PDF is not in the one \(low-s, DER\) form")
    refused(site, _rewrite_cms(data, unsigned_attribute), r"PDF signature: the PDF signature carries unsigned attributes")


def test_a_signer_touching_more_than_catalog_and_page_is_refused(site: Path) -> None:
    """Closed set of redefined objects: pyHanko's default writer (which rewrites /Info and XMP) signed by the genuine key."""
    import asyncio

    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.sign import fields, signers

    from uc_attest._internal.attest.certificates import self_signed_certificate
    from uc_attest._internal.attest.keys import load_private_key
    from uc_attest._internal.report.pdf_signature import SIGNATURE_FIELD, _pyhanko_signer

    data = (site / "report.pdf").read_bytes()
    rendered = data[: read_report_layout(data).rendered_end]
    key = load_private_key(site / "customer.key", None)
    meta = signers.PdfSignatureMetadata(field_name=SIGNATURE_FIELD, md_algorithm="sha256", subfilter=fields.SigSeedSubFilter.PADES)
    signer = signers.PdfSigner(meta, signer=_pyhanko_signer(key, self_signed_certificate(key, "Example Hospital")), new_field_spec=fields.SigFieldSpec(SIGNATURE_FIELD))
    out = io.BytesIO()
    asyncio.run(signer.async_sign_pdf(IncrementalPdfFileWriter(io.BytesIO(rendered), strict=False), output=out))
    refused(site, out.getvalue(), r"structure: the signature update (redefines rendered object|adds object)")


def test_verdict_line_names_model_and_pack_and_pack_is_bound(site: Path, tmp_path: Path) -> None:
    manifest_sha = hashlib.sha256((site / "pack" / "ucpack.json").read_bytes()).hexdigest()
    base = ("verify-report", site / "report.pdf", "--key", site / "vendor.pub", "--customer-key", site / "customer.pub")
    rc, out, err = attest(*base, "--pack", site / "pack")
    assert rc == 0, out + err
    assert f"ok    pack: the report is about the given pack (manifest sha256 {manifest_sha})" in out
    model = json.loads((site / "results.json").read_bytes())["artifact"]["model_name"]
    assert f"recorded verdict: PASS for model {model}, pack manifest sha256 {manifest_sha}" in out
    rc, out, err = attest(*base, "--manifest-sha256", manifest_sha.upper())
    assert rc == 0, out + err
    other = tmp_path / "other-pack"
    shutil.copytree(site / "pack", other)
    (other / "ucpack.json").write_bytes((other / "ucpack.json").read_bytes() + b"\n")
    rc, out, err = attest(*base, "--pack", other)
    assert rc == 1 and out.rstrip().endswith("REPORT: NOT VERIFIED") and "pack: the report is about another pack" in out, out + err
    rc, out, err = attest(*base, "--manifest-sha256", "0" * 64)
    assert rc == 1 and "pack: the report is about another pack" in out, out + err
    rc, out, err = attest(*base, "--manifest-sha256", "xyz")
    assert rc == 2 and "64 hex digits" in err
    rc, out, err = attest(*base)
    assert rc == 0 and "note  pack: not compared" in out, out + err


def test_same_signer_as_vendor_and_customer_is_refused(site: Path) -> None:
    shutil.copyfile(site / "customer.pub", site / "copy.pub")
    for vendor in (site / "customer.pub", site / "copy.pub"):
        rc, out, err = attest("verify-report", site / "report.pdf", "--key", vendor, "--customer-key", site / "customer.pub")
        assert rc == 2 and "same signer" in err and out.rstrip().endswith("REPORT: NOT VERIFIED"), out + err


def _other_renderer(monkeypatch: pytest.MonkeyPatch, version: str = "WeasyPrint 99.0") -> None:
    """This machine's renderer becomes another version that lays the pages out differently."""
    from uc_attest._internal.report import render

    genuine = render.render_report_bytes
    monkeypatch.setattr(render, "renderer_version", lambda: version)
    monkeypatch.setattr(render, "render_report_bytes", lambda results, attachments=None: genuine(results, attachments) + b"% laid out by another renderer\n")


def test_another_renderer_version_still_verifies_a_key_signed_report(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from uc_attest._internal.report.render import recorded_renderer

    data = (site / "report.pdf").read_bytes()
    recorded = recorded_renderer(data[: read_report_layout(data).rendered_end])
    assert recorded.startswith("WeasyPrint ")
    _other_renderer(monkeypatch)
    rc, out, err = verify(site)
    assert rc == 0, out + err
    assert out.rstrip().endswith("REPORT: VERIFIED")
    assert f"ok    pages: bound by the customer's PDF signature over the one signed revision, not re-rendered: the report was rendered by {recorded}, this machine has WeasyPrint 99.0" in out


def test_same_renderer_version_but_other_pages_is_refused(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A page that does not re-render under the very renderer version that made it is an edit, signed or not."""
    from uc_attest._internal.report.render import renderer_version

    _other_renderer(monkeypatch, renderer_version())
    rc, out, err = verify(site)
    assert rc == 1 and "FAIL  pages: not byte-identical to a fresh rendering of the embedded results by the same renderer" in out, out + err


def test_keyless_verdict_with_another_renderer_says_its_pages_are_not_bound(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import datetime, timezone

    from support.signed_report import write_keyless_report

    write_keyless_report(site, datetime(2025, 3, 1, tzinfo=timezone.utc))
    args = ("verify-report", site / "keyless.pdf", "--key", site / "vendor.pub", "--trusted-root", site / "trusted_root.json",
            "--customer-identity", "qa@hospital.example", "--customer-issuer", "https://accounts.example.com")  # fmt: skip
    _other_renderer(monkeypatch)
    rc, out, err = attest(*args)
    assert rc == 1 and out.rstrip().endswith("REPORT: NOT VERIFIED"), out + err
    assert "ok    customer's signed verdict: PASSED signed by qa@hospital.example" in out
    assert "FAIL  pages: NOT BOUND: rendered by WeasyPrint" in out and "this machine has WeasyPrint 99.0" in out
    # A keyless report never carries a PDF signature: one appended is something added after rendering.
    from uc_attest._internal.attest.certificates import self_signed_certificate
    from uc_attest._internal.attest.keys import load_private_key
    from uc_attest._internal.report.pdf_signature import sign_pdf

    key = load_private_key(site / "customer.key", None)
    (site / "keyless.pdf").write_bytes(sign_pdf((site / "keyless.pdf").read_bytes(), key, self_signed_certificate(key, "Mallory"), reason="x"))
    rc, out, err = attest(*args)
    assert rc == 1 and "structure: an update with a PDF signature follows the rendered report, but its verdict is signed keyless" in out, out + err


def test_attachments_are_read_from_the_signed_revision(site: Path) -> None:
    """Even where a later revision swaps results.json, what is checked is the signed revision's (and the file is refused)."""
    from uc_attest._internal.report.attachments import read_attachments
    from uc_attest._internal.report.verify import ATTACHMENT_CAPS

    data = (site / "report.pdf").read_bytes()
    layout = read_report_layout(data)
    files = read_attachments(layout.rendered(data), ATTACHMENT_CAPS)
    assert files[RESULTS_ATTACHMENT] == (site / "results.json").read_bytes()


def test_genuine_report_verifies_in_a_fresh_process(site: Path) -> None:
    """Without pyHanko imported first (it registers CMS attribute names in asn1crypto), as an auditor runs it."""
    import subprocess
    import sys

    from support.paths import child_env

    env = child_env()
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "attest"), "verify-report", str(site / "report.pdf"), "--key", str(site / "vendor.pub"), "--customer-key", str(site / "customer.pub")],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0 and proc.stdout.rstrip().endswith("REPORT: VERIFIED"), proc.stdout + proc.stderr
