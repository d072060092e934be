"""``attest report`` and ``attest verify-report``: re-render, re-verify, and refuse bad input in one line."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path

import pikepdf
import pytest
from support.cli import CliResult, assert_one_line_error, run_cli
from support.report_samples import make_results, rerender_report, signed_sample

from uc_attest._internal.report import BUNDLE_ATTACHMENT, RESULTS_ATTACHMENT, render_report


@pytest.fixture
def attest() -> Callable[..., CliResult]:
    return functools.partial(run_cli, "attest")


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path, Path]:
    """(public key, bundle, results.json, report.pdf rendered through the CLI's library call)."""
    tmp = tmp_path_factory.mktemp("signed")
    pub, bundle, results = signed_sample(tmp)
    bundle_path = tmp / "pack.sigstore.json"
    bundle_path.write_bytes(bundle)
    results_path = tmp / "results.json"
    results_path.write_bytes(results.to_json_bytes())
    report = tmp / "report.pdf"
    render_report(results, {BUNDLE_ATTACHMENT: bundle}, report)
    return pub, bundle_path, results_path, report


def _one_line_error(run: CliResult) -> None:
    assert_one_line_error(run.rc, run.err)


def test_report_rerenders_the_same_bytes(attest: Callable[..., CliResult], signed: tuple[Path, Path, Path, Path], tmp_path: Path) -> None:
    _pub, bundle, results, report = signed
    out = tmp_path / "again.pdf"
    run = attest("report", results, "-o", out, "--bundle", bundle)
    assert run.rc == 0, run.err
    assert "verdict PASS" in run.out
    assert out.read_bytes() == report.read_bytes()


def test_verify_report_accepts_an_authentic_report(attest: Callable[..., CliResult], signed: tuple[Path, Path, Path, Path]) -> None:
    pub, _bundle, _results, report = signed
    run = attest("verify-report", report, "--key", pub)
    # the vendor's evidence and the pages verify, but nobody signed the verdict: not evidence, exit 1
    assert run.rc == 1, run.err
    assert "ok    vendor attestation: signature valid" in run.out
    assert "ok    pages: byte for byte a fresh rendering" in run.out
    assert "FAIL  verdict UNSIGNED" in run.out
    assert "recorded verdict: PASS" in run.out and run.out.rstrip().endswith("REPORT: NOT VERIFIED")


def test_verify_report_with_another_key_fails(attest: Callable[..., CliResult], signed: tuple[Path, Path, Path, Path], tmp_path: Path) -> None:
    _pub, _bundle, _results, report = signed
    other, _b, _r = signed_sample(tmp_path)
    run = attest("verify-report", report, "--key", other)
    assert run.rc == 1 and "FAIL  vendor attestation: bundle was signed by key" in run.out
    assert run.out.rstrip().endswith("REPORT: NOT VERIFIED") and run.err == ""


def test_results_that_contradict_the_bundle_fail(attest: Callable[..., CliResult], signed: tuple[Path, Path, Path, Path], tmp_path: Path) -> None:
    pub, bundle, results_path, _report = signed
    data = json.loads(results_path.read_bytes())
    data["artifact"]["pack_manifest_sha256"] = data["digests"]["pack_manifest_sha256"] = "0" * 64
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(data))
    report = tmp_path / "forged.pdf"
    assert attest("report", forged, "-o", report, "--bundle", bundle).rc == 0
    run = attest("verify-report", report, "--key", pub)
    assert run.rc == 1 and "FAIL  the pack manifest digest in the results is not the one the attestation signs" in run.out


def test_swapped_bundle_is_detected(attest: Callable[..., CliResult], signed: tuple[Path, Path, Path, Path], tmp_path: Path) -> None:
    pub, _bundle, _results, report = signed
    _other_pub, other_bundle, _r = signed_sample(tmp_path)
    swapped = rerender_report(report, tmp_path / "swapped.pdf", {BUNDLE_ATTACHMENT: other_bundle})
    run = attest("verify-report", swapped, "--key", pub)
    assert run.rc == 1 and "not made for the embedded attestation" in run.out


def test_edited_results_are_detected(attest: Callable[..., CliResult], signed: tuple[Path, Path, Path, Path], tmp_path: Path) -> None:
    pub, _bundle, results_path, report = signed
    data = json.loads(results_path.read_bytes())
    data["checks"][0]["summary"] = "edited"
    edited = rerender_report(report, tmp_path / "edited.pdf", {RESULTS_ATTACHMENT: json.dumps(data).encode()})
    run = attest("verify-report", edited, "--key", pub)
    assert run.rc == 1
    assert "FAIL  pages: not byte-identical" in run.out  # the pages are no longer the rendering of the results


def test_a_report_without_bundle_cannot_be_verified(attest: Callable[..., CliResult], signed: tuple[Path, Path, Path, Path], tmp_path: Path) -> None:
    pub, _bundle, results, _report = signed
    out = tmp_path / "nobundle.pdf"
    run = attest("report", results, "-o", out)
    assert run.rc == 0 and "cannot be re-verified" in run.err
    run = attest("verify-report", out, "--key", pub)
    assert run.rc == 1 and "no attestation.sigstore.json embedded" in run.out


@pytest.mark.parametrize(
    "content",
    [b"", b"{not json", b'{"verdict": "PASS"}', json.dumps({"schema_version": 1}).encode()],
)
def test_report_refuses_unreadable_results(attest: Callable[..., CliResult], tmp_path: Path, content: bytes) -> None:
    results = tmp_path / "results.json"
    results.write_bytes(content)
    out = tmp_path / "report.pdf"
    run = attest("report", results, "-o", out)
    assert run.rc == 2
    _one_line_error(run)
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]


def test_report_refuses_a_bundle_that_is_not_the_results_one(attest: Callable[..., CliResult], tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    results.write_bytes(make_results("PASS").to_json_bytes())
    bundle = tmp_path / "b.json"
    bundle.write_text("{}")
    run = attest("report", results, "-o", tmp_path / "r.pdf", "--bundle", bundle)
    assert run.rc == 2 and "does not belong" in run.err
    assert not (tmp_path / "r.pdf").exists()


def test_usage_errors(attest: Callable[..., CliResult], tmp_path: Path, signed: tuple[Path, Path, Path, Path]) -> None:
    pub, _bundle, _results, report = signed
    assert attest("report", tmp_path / "absent.json", "-o", tmp_path / "r.pdf").rc == 2
    run = attest("verify-report", report)
    assert run.rc == 2 and "--key" in run.err
    run = attest("verify-report", report, "--key", pub, "--identity", "x")
    assert run.rc == 2 and "not both" in run.err
    junk = tmp_path / "junk.pdf"
    junk.write_bytes(b"%PDF-1.7 nothing")
    run = attest("verify-report", junk, "--key", pub)
    assert run.rc == 2
    _one_line_error(run)
    plain = tmp_path / "plain.pdf"
    pikepdf.new().save(plain)
    run = attest("verify-report", plain, "--key", pub)  # a PDF, but not laid out as our renderer writes one
    assert run.rc == 1 and "FAIL  structure: a cross-reference table" in run.out and run.out.rstrip().endswith("REPORT: NOT VERIFIED")


def test_report_never_overwrites_its_input(attest: Callable[..., CliResult], signed: tuple[Path, Path, Path, Path]) -> None:
    _pub, bundle, results, _report = signed
    before = results.read_bytes()
    run = attest("report", results, "-o", results)
    assert run.rc == 2 and "overwrite" in run.err
    assert results.read_bytes() == before
    assert attest("report", results, "-o", bundle, "--bundle", bundle).rc == 2
