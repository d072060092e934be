"""``attest bom``: a CycloneDX 1.6 ML-BOM of an attested pack, valid against the CycloneDX JSON schema."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import click
import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from support.cli import run_cli

from uc_attest._internal.cli.attest_bom import bom_command
from uc_attest._internal.cli.attest_check import check_command

pytestmark = pytest.mark.slow  # the shared signed delivery (tests/conftest.py)


@pytest.fixture(scope="module")
def delivery(tmp_path_factory: pytest.TempPathFactory, delivery_root: tuple[Path, Any]) -> Path:
    """The shared delivery (signed with a baseline measurement) checked once: bundle, tokens, results.json."""
    root = tmp_path_factory.mktemp("bom") / "d"
    shutil.copytree(delivery_root[0], root)
    group = click.Group("attest", commands=[check_command, bom_command])
    checked = run_cli(group, "check", root / "pack", "--key", root / "vendor.pub", "--json", root / "results.json", "--quiet")
    assert checked.rc == 0, checked.out + checked.err
    return root


def _bom(root: Path, *args: object) -> tuple[int, str, dict | None]:
    out = root / "bom.cdx.json"
    out.unlink(missing_ok=True)
    result = run_cli(click.Group("attest", commands=[bom_command]), "bom", root / "pack.sigstore.json", "-o", out, *args)
    return result.rc, result.out + result.err, json.loads(out.read_text()) if out.exists() else None


def _schema_errors(document: dict) -> object:
    return JsonStrictValidator(SchemaVersion.V1_6).validate_str(json.dumps(document))


def test_bom_is_valid_cyclonedx_and_carries_pack_quantisation_baseline_and_both_measurements(delivery: Path) -> None:
    rc, out, bom = _bom(delivery, "--key", delivery / "vendor.pub", "--results", delivery / "results.json")
    assert rc == 0, out
    assert bom is not None and _schema_errors(bom) is None
    assert bom["specVersion"] == "1.6"
    model = bom["metadata"]["component"]
    manifest_sha = json.loads((delivery / "results.json").read_text())["artifact"]["pack_manifest_sha256"]
    assert model["type"] == "machine-learning-model" and model["hashes"] == [{"alg": "SHA-256", "content": manifest_sha}]
    props = {p["name"]: p["value"] for p in model["properties"]}
    assert props["uc_attest:quantization.bits"] == "4" and props["uc_attest:quantization.block_size"] == "32"
    assert props["uc_attest:attestation.signature"].startswith("verified: key ")
    files = {c["name"]: c["hashes"][0]["content"] for c in model["components"]}
    assert "pack/ucpack.json" in files and "eval-tokens.safetensors" in files
    [ancestor] = model["pedigree"]["ancestors"]
    assert ancestor["type"] == "machine-learning-model" and any(c["name"] == "baseline/config.json" for c in ancestor["components"])
    metrics = model["modelCard"]["quantitativeAnalysis"]["performanceMetrics"]
    results = json.loads((delivery / "results.json").read_text())
    assert [m["type"] for m in metrics] == ["perplexity", "perplexity", "perplexity-ratio", "perplexity", "perplexity-ratio"]
    assert float(metrics[3]["value"]) == results["perplexity"]["measured"]["perplexity"]
    assert files["eval-tokens.safetensors"] in metrics[0]["slice"] and "customer re-measurement" in metrics[3]["slice"]


def test_bom_without_a_trust_anchor_says_the_signature_was_not_verified(delivery: Path) -> None:
    rc, out, bom = _bom(delivery)
    assert rc == 0 and "NOT verified" in out
    assert bom is not None and _schema_errors(bom) is None
    props = {p["name"]: p["value"] for p in bom["metadata"]["component"]["properties"]}
    assert props["uc_attest:attestation.signature"].startswith("NOT verified")
    assert "signature NOT verified" in bom["metadata"]["component"]["modelCard"]["quantitativeAnalysis"]["performanceMetrics"][0]["slice"]


def test_bom_refuses_a_forged_bundle_other_results_and_another_manifest(delivery: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    shutil.copytree(delivery, site)
    bundle = json.loads((site / "pack.sigstore.json").read_text())
    sig = bundle["dsseEnvelope"]["signatures"][0]["sig"]
    bundle["dsseEnvelope"]["signatures"][0]["sig"] = sig[:10] + ("A" if sig[10] != "A" else "B") + sig[11:]
    (site / "pack.sigstore.json").write_text(json.dumps(bundle))
    rc, out, bom = _bom(site, "--key", site / "vendor.pub")
    assert rc == 1 and bom is None and len(out.strip().splitlines()) == 1
    shutil.copy(delivery / "pack.sigstore.json", site / "pack.sigstore.json")
    results = json.loads((site / "results.json").read_text())
    results["artifact"]["pack_manifest_sha256"] = results["digests"]["pack_manifest_sha256"] = "0" * 64
    (site / "other.json").write_text(json.dumps(results))
    rc, out, bom = _bom(site, "--results", site / "other.json")
    assert rc == 1 and "about another pack" in out and bom is None
    (site / "pack" / "ucpack.json").write_bytes((site / "pack" / "ucpack.json").read_bytes() + b" ")
    rc, out, bom = _bom(site)
    assert rc == 1 and "not the attested one" in out and bom is None


def test_the_schema_validation_is_real(delivery: Path) -> None:
    _, _, bom = _bom(delivery)
    assert bom is not None
    bom["metadata"]["component"]["modelCard"]["quantitativeAnalysis"]["performanceMetrics"][0]["value"] = 3.5  # must be a string
    assert _schema_errors(bom) is not None
