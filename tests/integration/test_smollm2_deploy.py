"""The deploy path on the real model: export, load with transformers, prove it equal with --deployed."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch

import uc_attest
from uc_attest._internal.pack.deployed import verify_deployed
from uc_attest._internal.pack.export import export_pack
from uc_attest._internal.pack.reader import open_pack

pytestmark = pytest.mark.integration


def test_export_of_smollm2_loads_in_transformers_and_proves_equal(smollm2_pack: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    served = tmp_path / "served"
    export_pack(smollm2_pack, served, max_shard_bytes=100_000_000)  # several shards, as a large model would have
    assert len(list(served.glob("model-*.safetensors"))) > 1
    pack = open_pack(smollm2_pack)
    report = verify_deployed(pack, served)
    assert report.ok and report.tensors_matching == len(pack.manifest.tensors)

    model = AutoModelForCausalLM.from_pretrained(str(served), dtype="auto").eval()
    reference = uc_attest.load_model(smollm2_pack)
    ids = AutoTokenizer.from_pretrained(str(served))("The customer runs the model the vendor measured.", return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.equal(model(ids).logits, reference(ids).logits)

    shard = sorted(served.glob("model-*.safetensors"))[1]
    data = bytearray(shard.read_bytes())
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    victim = next(k for k in header if k != "__metadata__" and k.endswith("proj.weight"))
    data[8 + n + header[victim]["data_offsets"][0] + 4] ^= 0x10
    shard.write_bytes(data)
    findings = verify_deployed(pack, served).findings
    assert [(f.name, f.status) for f in findings] == [(victim, "differs")]
