"""Gathering what ``attest bom`` describes: the statement (verified when a trust anchor is given), the pack's manifest, results.json."""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..attest.bundle import read_unverified_statement
from ..attest.paths import BUNDLE_SUFFIX
from ..attest.trust import TrustAnchor
from ..attest.verify import parse_predicate, read_bundle_bytes, verify_bundle
from ..pack.reader import open_pack
from ..safe_io import read_input_file
from .bom import BomInputs
from .results import MAX_RESULTS_BYTES, load_results



def default_pack_for(bundle: Path) -> Path | None:
    """``NAME.sigstore.json`` -> the directory ``NAME`` beside it, when there is one."""
    if bundle.name.endswith(BUNDLE_SUFFIX) and len(bundle.name) > len(BUNDLE_SUFFIX):
        candidate = bundle.with_name(bundle.name[: -len(BUNDLE_SUFFIX)])
        if candidate.is_dir():
            return candidate
    return None


def collect_bom_inputs(bundle: Path, trust: TrustAnchor | None, pack: Path | None, results: Path | None) -> BomInputs:
    """Read everything the BOM needs; ``trust`` is a TrustAnchor or None (then the signature is not verified)."""
    raw = read_bundle_bytes(bundle)
    if trust is not None:
        verified = verify_bundle(raw, trust)
        statement, predicate = verified.statement, verified.predicate
        signer = verified.signer
        verified_by = f"key {signer.key_fingerprint}" if signer.mode == "key" else f"keyless {signer.identity} ({signer.issuer})"
    else:
        statement = read_unverified_statement(raw)  # the BOM then says the signature was not verified
        predicate, verified_by = parse_predicate(statement), None
    manifest = manifest_sha256 = None
    pack_dir = pack if pack is not None else default_pack_for(bundle)
    if pack_dir is not None:
        opened = open_pack(pack_dir)
        manifest, manifest_sha256 = opened.manifest, opened.manifest_sha256
    results_model = results_sha256 = None
    if results is not None:
        data = read_input_file(results, "results file", MAX_RESULTS_BYTES)
        results_model, results_sha256 = load_results(data, str(results)), hashlib.sha256(data).hexdigest()
    return BomInputs(statement=statement, predicate=predicate, bundle_sha256=hashlib.sha256(raw).hexdigest(), verified_by=verified_by,
                     manifest=manifest, manifest_sha256=manifest_sha256, results=results_model, results_sha256=results_sha256)  # fmt: skip
