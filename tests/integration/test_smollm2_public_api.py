"""The public Python API end to end on the real model (SmolLM2-135M-Instruct, dequantised from the Q4_1 GGUF).

A vendor's and a customer's script, with nothing but ``import uc_attest``:
compress, sign, verify the bundle, verify and load the pack, check it, and
generate with the loaded model. Data-free 5-bit coding keeps it to minutes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import uc_attest

pytestmark = pytest.mark.integration


def test_vendor_and_customer_scripts_on_smollm2(smollm2_dir: Path, tmp_path: Path) -> None:
    pack = tmp_path / "smollm2.ucpack"
    manifest = uc_attest.compress_model(smollm2_dir, pack, uc_attest.CompressOptions(method="datafree", bits=5, block_size=64))
    uc_attest.generate_keypair(tmp_path / "vendor")
    signed = uc_attest.sign_pack(pack, tmp_path / "vendor.key", baseline=smollm2_dir, seq_len=256, max_windows=2)

    vendor = uc_attest.KeyAnchor(tmp_path / "vendor.pub")
    statement = uc_attest.verify_bundle(signed.bundle, vendor)
    verified = uc_attest.verify_pack(pack)
    assert statement.predicate.pack.manifest_sha256 == verified.report.manifest_sha256
    assert len(verified.report.tensors) == len(manifest.tensors)
    model = uc_attest.load_model(verified, expected_manifest_sha256=statement.predicate.pack.manifest_sha256)
    assert type(model).__name__ == "LlamaForCausalLM"
    with torch.no_grad():
        out = model.generate(torch.tensor([[1, 2, 3]]), max_new_tokens=4, do_sample=False)
    assert out.shape == (1, 7)

    results = uc_attest.check_pack(pack, vendor, policy="development")
    assert results.verdict.value == "PASS", [(c.name, c.summary) for c in results.checks if c.status.value == "FAIL"]
