"""The customer's signed verdict (SLSA VSA + PAdES) and an ``attest verify-report`` an auditor can rely on.

One tiny delivery is checked once with ``--sign-key``; each test copies the
outputs and forges one thing an attacker could (mutate-then-verify): every
forgery must end ``REPORT: NOT VERIFIED`` with exit 1, the genuine report
``REPORT: VERIFIED`` with exit 0.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pikepdf
import pytest
from support.report_samples import rerender_report
from support.signed_report import attest, check_and_sign, verify

from uc_attest._internal.attest.keys import generate_private_key, private_key_pem, public_key_pem
from uc_attest._internal.check.vsa import VSA_PREDICATE_TYPE, parse_vsa
from uc_attest._internal.report import BUNDLE_ATTACHMENT, RESULTS_ATTACHMENT, VSA_ATTACHMENT

pytestmark = pytest.mark.slow

@pytest.fixture
def site(checked: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "site"
    shutil.copytree(checked, dest)
    return dest


def assert_not_verified(result: tuple[int, str, str], why: str) -> None:
    rc, out, err = result
    assert rc == 1, out + err
    assert out.rstrip().endswith("REPORT: NOT VERIFIED"), out
    assert why in out, out
    assert "Traceback" not in err


def rerender(site: Path, name: str, swap: dict[str, bytes]) -> Path:
    """``report.pdf`` rendered again by our renderer with ``swap`` forced in (see report_samples.rerender_report)."""
    return rerender_report(site / "report.pdf", site / name, swap)


def embed_customer_vsa(site: Path, statement, name: str) -> Path:  # type: ignore[no-untyped-def]
    """The genuine report with its VSA replaced by ``statement`` signed with the genuine customer key."""
    from uc_attest._internal.attest.keys import load_private_key
    from uc_attest._internal.attest.signing import sign_statement

    return rerender(site, name, {VSA_ATTACHMENT: sign_statement(statement, load_private_key(site / "customer.key", None))})


def test_genuine_signed_report_verifies(site: Path) -> None:
    rc, out, err = verify(site)
    assert rc == 0, out + err
    assert out.rstrip().endswith("REPORT: VERIFIED")
    assert "customer's signed verdict: PASSED signed by key sha256:" in out
    assert "PDF signature (PAdES): by the customer's key" in out and "over every byte of the file but its own /Contents" in out
    assert "pages: byte for byte a fresh rendering" in out
    assert "the signer's own claim" in out


def test_vsa_pins_results_bytes_and_pack(site: Path) -> None:
    bundle = json.loads((site / "results.vsa.sigstore.json").read_bytes())
    verdict = parse_vsa(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    assert verdict.statement.predicate_type == VSA_PREDICATE_TYPE
    assert verdict.results_sha256 == hashlib.sha256((site / "results.json").read_bytes()).hexdigest()
    manifest_sha = hashlib.sha256((site / "pack" / "ucpack.json").read_bytes()).hexdigest()
    assert verdict.pack_files["ucpack.json"] == manifest_sha
    assert verdict.summary.verification_result == "PASSED"
    assert verdict.summary.verified_levels == ["UC_ATTEST_POLICY_DEVELOPMENT"]
    assert verdict.summary.input_attestations[0].digest.sha256 == hashlib.sha256((site / "pack.sigstore.json").read_bytes()).hexdigest()


def test_signed_report_stays_pdfa_with_its_attachments(site: Path) -> None:
    with pikepdf.open(site / "report.pdf") as pdf:
        assert pdf.open_metadata()["pdfaid:part"] == "3" and pdf.open_metadata()["pdfaid:conformance"] == "B"
        assert set(pdf.attachments) == {RESULTS_ATTACHMENT, BUNDLE_ATTACHMENT, "policy.toml", VSA_ATTACHMENT}
        assert pdf.attachments[RESULTS_ATTACHMENT].get_file().read_bytes() == (site / "results.json").read_bytes()
        field = pdf.Root.AcroForm.Fields[0]
        assert field.FT == "/Sig" and str(field.V.SubFilter) == "/ETSI.CAdES.detached"
    if shutil.which("qpdf"):
        check = subprocess.run(["qpdf", "--check", str(site / "report.pdf")], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr


def test_forged_results_rerendered_are_not_verified(site: Path) -> None:
    """The issue's reproduction: take the results, change the verdict, re-render with the vendor bundle."""
    data = json.loads((site / "results.json").read_bytes())
    data["checks"][-1]["summary"] += " (edited)"
    forged = site / "forged.json"
    forged.write_text(json.dumps(data, indent=2) + "\n")
    rc, _out, err = attest("report", forged, "--bundle", site / "pack.sigstore.json", "-o", site / "forged.pdf")
    assert rc == 0, err
    assert_not_verified(verify(site, site / "forged.pdf"), "verdict UNSIGNED")
    # Embedding the genuine signed verdict with forged results is refused at render time ...
    rc, _out, err = attest("report", forged, "--bundle", site / "pack.sigstore.json", "--vsa", site / "results.vsa.sigstore.json", "-o", site / "forged2.pdf")
    assert rc == 2 and "does not pin these results" in err


def test_forged_results_with_the_genuine_vsa_are_not_verified(site: Path) -> None:
    """... and forced in with pikepdf, the VSA's results digest no longer matches."""
    data = json.loads((site / "results.json").read_bytes())
    data["verdict_reasons"] = ["Every check the policy requires passed (forged)."]
    forged = rerender(site, "forged.pdf", {RESULTS_ATTACHMENT: (json.dumps(data, indent=2) + "\n").encode()})
    assert_not_verified(verify(site, forged), "is not the one the customer signed")


def test_painted_page_is_not_verified(site: Path) -> None:
    with pikepdf.open(site / "report.pdf") as pdf:
        page = pdf.pages[0]
        font = pdf.make_indirect(pikepdf.Dictionary(Type=pikepdf.Name.Font, Subtype=pikepdf.Name.Type1, BaseFont=pikepdf.Name.Helvetica))
        page.Resources.Font = page.Resources.get("/Font", pikepdf.Dictionary())
        page.Resources.Font.Paint = font
        page.contents_add(pdf.make_stream(b"q 1 0 0 rg BT /Paint 48 Tf 80 500 Td (REJECTED) Tj ET Q"), prepend=False)
        pdf.save(site / "painted.pdf")
    rc, out, _err = verify(site, site / "painted.pdf")
    assert_not_verified((rc, out, _err), "structure:")


def test_report_resigned_by_another_key_is_not_verified(site: Path, tmp_path: Path) -> None:
    other = generate_private_key()
    (site / "other.key").write_bytes(private_key_pem(other, None))
    os.chmod(site / "other.key", 0o600)
    (site / "other.pub").write_bytes(public_key_pem(other.public_key()))
    rc, _out, err = attest("keygen", "-o", tmp_path / "mallory", "--organization", "Example Hospital")
    assert rc == 0, err
    rc, out, err = check_and_sign(site, tmp_path / "mallory.key", site / "r2.json", site / "r2.pdf")
    assert rc == 0, out + err
    rc, out, _err = verify(site, site / "r2.pdf")
    assert_not_verified((rc, out, _err), "not by the given key")
    assert "PDF signature: the PDF is signed by another key" in out


def test_vsa_from_another_delivery_is_not_verified(site: Path) -> None:
    """A genuine customer VSA for another vendor bundle, embedded with these results, does not verify."""
    from uc_attest._internal.check.vsa import build_vsa_statement
    from uc_attest._internal.check.results import load_results

    results_bytes = (site / "results.json").read_bytes()
    results = load_results(results_bytes)
    other_bundle_sha = hashlib.sha256(b"another delivery's bundle").hexdigest()
    forged_digests = results.digests.model_copy(update={"bundle_sha256": other_bundle_sha})
    other_results = results.model_copy(update={"digests": forged_digests})
    statement = build_vsa_statement(other_results, results_bytes, other_bundle_sha)
    assert_not_verified(verify(site, embed_customer_vsa(site, statement, "other.pdf")), "made for another vendor attestation")


def test_extra_attachment_is_not_verified(site: Path) -> None:
    assert_not_verified(verify(site, rerender(site, "extra.pdf", {"note.txt": b"trust me"})), "unexpected embedded file(s) note.txt")


def test_vsa_whose_results_digest_mismatches_is_not_verified(site: Path) -> None:
    """A VSA signed by the customer key over other results bytes (one byte changed)."""
    from uc_attest._internal.check.vsa import build_vsa_statement
    from uc_attest._internal.check.results import load_results

    results_bytes = (site / "results.json").read_bytes()
    statement = build_vsa_statement(load_results(results_bytes), results_bytes + b" ", hashlib.sha256((site / "pack.sigstore.json").read_bytes()).hexdigest())
    assert_not_verified(verify(site, embed_customer_vsa(site, statement, "mismatch.pdf")), "is not the one the customer signed")


def test_unsigned_check_says_so_and_its_report_is_not_verified(site: Path) -> None:
    rc, out, err = attest("check", site / "pack", "--key", site / "vendor.pub", "--policy", "development", "--json", site / "u.json", "--report", site / "u.pdf", "--quiet")
    assert rc == 0, out + err
    assert "verdict signature: UNSIGNED" in out
    from uc_attest._internal.check.results import load_results
    from uc_attest._internal.report import render_html

    html = render_html(load_results((site / "u.json").read_bytes()), {BUNDLE_ATTACHMENT: (site / "pack.sigstore.json").read_bytes()})
    assert "Verdict UNSIGNED" in html and "not evidence" in html
    rc, out, _err = attest("verify-report", site / "u.pdf", "--key", site / "vendor.pub")
    assert_not_verified((rc, out, _err), "verdict UNSIGNED")
    assert "ok    vendor attestation: signature valid" in out


def test_signed_report_needs_the_customer_anchor(site: Path) -> None:
    rc, out, err = attest("verify-report", site / "report.pdf", "--key", site / "vendor.pub")
    assert rc == 2 and out.rstrip().endswith("REPORT: NOT VERIFIED") and "--customer-key" in err


def test_group_readable_private_key_is_refused(site: Path) -> None:
    os.chmod(site / "customer.key", 0o640)
    args = ("check", site / "pack", "--key", site / "vendor.pub", "--policy", "development", "--json", site / "k.json", "--sign-key", site / "customer.key", "--quiet")
    rc, _out, err = attest(*args)
    assert rc == 2 and err.splitlines()[0].startswith("error: ") and "accessible by group or others" in err.splitlines()[0]
    assert err.splitlines()[1:] == [f"hint: run chmod 600 {site / 'customer.key'}, or pass --allow-open-key-file to use it anyway"]
    assert not (site / "k.json").exists()
    rc, out, err = attest(*args, "--allow-open-key-file")
    assert rc == 0, out + err


def test_non_pdf_and_truncated_pdf_errors_name_the_file(site: Path) -> None:
    (site / "notes.pdf").write_text("hello")
    rc, out, err = verify(site, site / "notes.pdf")
    assert rc == 2 and "notes.pdf is not a PDF file" in err and "0x" not in err
    data = (site / "report.pdf").read_bytes()
    (site / "cut.pdf").write_bytes(data[: len(data) // 3])
    rc, out, err = verify(site, site / "cut.pdf")
    assert rc == 2 and "damaged or truncated PDF" in err and "_io." not in err + out and "0x" not in err, out + err
    assert out.rstrip().endswith("REPORT: NOT VERIFIED")


def test_attachment_bomb_is_capped(site: Path) -> None:
    """A small PDF whose results.json inflates to 300 MiB is refused without inflating it."""
    import resource
    import zlib

    bomb = zlib.compress(b" " * (300 << 20), 9)
    with pikepdf.open(site / "report.pdf") as pdf:
        spec = pikepdf.AttachedFileSpec(pdf, b"", filename=RESULTS_ATTACHMENT)
        pdf.attachments[RESULTS_ATTACHMENT] = spec
        stream = pdf.attachments[RESULTS_ATTACHMENT].get_file().obj
        stream.write(bomb, filter=pikepdf.Name.FlateDecode)
        pdf.save(site / "bomb.pdf")
    assert (site / "bomb.pdf").stat().st_size < 2 << 20
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rc, out, err = verify(site, site / "bomb.pdf")
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert rc == 1 and "structure:" in out, out + err  # a re-saved file is refused before any attachment is inflated
    assert grown_kib < 300 << 10  # far below the 300 MiB the attachment would inflate to


def test_deeply_nested_results_is_one_line(site: Path) -> None:
    rc, out, err = verify(site, rerender(site, "deep.pdf", {RESULTS_ATTACHMENT: b"[" * 200_000 + b"]" * 200_000}))
    assert rc == 2 and "nested too deeply" in err and "internal error" not in err, out + err


def test_edit_after_signing_breaks_the_pdf_signature(site: Path) -> None:
    data = bytearray((site / "report.pdf").read_bytes())
    assert data.startswith(b"%PDF-1.7")
    data[7] = ord("6")  # %PDF-1.7 -> %PDF-1.6: one signed byte, the layout unchanged
    (site / "edited.pdf").write_bytes(bytes(data))
    rc, out, _err = verify(site, site / "edited.pdf")
    assert_not_verified((rc, out, _err), "PDF signature")


def test_keyless_customer_verdict_verifies_with_the_log_time(site: Path) -> None:
    """A customer who signs keyless: the VSA verifies under the Sigstore root and identity, and the time shown is the log's."""
    from datetime import datetime, timezone

    from support.signed_report import write_keyless_report

    logged = datetime(2025, 3, 1, 12, 0, 0, tzinfo=timezone.utc)
    write_keyless_report(site, logged)
    args = ("verify-report", site / "keyless.pdf", "--key", site / "vendor.pub", "--trusted-root", site / "trusted_root.json")
    rc, out, err = attest(*args, "--customer-identity", "qa@hospital.example", "--customer-issuer", "https://accounts.example.com")
    assert rc == 0, out + err
    assert "signed by qa@hospital.example" in out and f"signed at {logged.isoformat()} per the transparency log (verified)" in out
    assert out.rstrip().endswith("REPORT: VERIFIED")
    rc, out, err = attest(*args, "--customer-identity", "mallory@example.com", "--customer-issuer", "https://accounts.example.com")
    assert_not_verified((rc, out, err), "customer's signed verdict: keyless verification failed")


def test_keyless_vendor_age_uses_the_log_time_not_signed_at(site: Path) -> None:
    """A keyless vendor bundle logged long ago whose predicate claims a fresh signedAt: the age check uses the log's time."""
    from datetime import datetime, timezone

    from support.fake_sigstore import FakeSigstore

    fake = FakeSigstore()
    (site / "trusted_root.json").write_text(json.dumps(fake.trusted_root()))
    payload = base64.b64decode(json.loads((site / "pack.sigstore.json").read_bytes())["dsseEnvelope"]["payload"])
    logged = datetime(2025, 1, 2, tzinfo=timezone.utc)
    (site / "keyless.sigstore.json").write_bytes(fake.sign(payload, "release@vendor.example", "https://accounts.example.com", when=logged))
    policy = site / "aged.toml"
    text = (Path(__file__).resolve().parents[2] / "policies" / "development.toml").read_text()
    policy.write_text(text.replace('name = "development"', 'name = "aged"').replace("[attestation]\n", "[attestation]\nmax_age_days = 30\n"))
    rc, out, err = attest(
        "check", site / "pack", "--bundle", site / "keyless.sigstore.json", "--tokens", site / "pack.eval-tokens.safetensors",
        "--trusted-root", site / "trusted_root.json", "--identity", "release@vendor.example", "--issuer", "https://accounts.example.com",
        "--policy", policy, "--json", site / "aged.json", "--quiet",
    )  # fmt: skip
    assert rc == 1, out + err
    age = next(c for c in json.loads((site / "aged.json").read_bytes())["checks"] if c["name"] == "attestation_age")
    assert age["status"] == "FAIL" and age["details"]["signed_at"] == "2025-01-02T00:00:00Z", age
    assert age["details"]["time_source"].startswith("transparency log")


def test_a_policy_may_require_a_signed_verdict(site: Path) -> None:
    policy = site / "audited.toml"
    text = (Path(__file__).resolve().parents[2] / "policies" / "development.toml").read_text()
    policy.write_text(text.replace('name = "development"', 'name = "audited"') + "\n[verdict]\nrequire_signature = true\n")
    base = ("check", site / "pack", "--key", site / "vendor.pub", "--policy", policy, "--json", site / "a.json", "--quiet")
    rc, _out, err = attest(*base)
    assert rc == 2 and "requires a signed verdict" in err and not (site / "a.json").exists()
    rc, out, err = attest(*base, "--sign-key", site / "customer.key")
    assert rc == 0, out + err
    assert (site / "a.vsa.sigstore.json").is_file()
