"""``attest check --deployed DIR``: a required row about the served directory; the OMS signature as an advisory row."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import click
import pytest
from support.cli import run_cli

from uc_attest._internal.attest.keys import write_keypair
from uc_attest._internal.cli.attest_check import check_command
from uc_attest._internal.cli.attest_sign import sign_command
from uc_attest._internal.pack.export import export_pack

pytestmark = pytest.mark.slow  # the shared signed delivery (tests/conftest.py)

ATTEST = click.Group("attest", commands=[sign_command, check_command])


def test_check_with_deployed_passes_then_names_a_changed_tensor(tiny_pack: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    key, pub, _ = write_keypair(tmp_path / "vendor")
    signed = run_cli(ATTEST, "sign", tiny_pack, "--key", key, "--baseline", tiny_model_dir, "--seq-len", "16", "--max-windows", "2", "--oms", "--quiet")
    assert signed.rc == 0, signed.err
    served = tmp_path / "served"
    export_pack(tiny_pack, served)
    ok = run_cli(ATTEST, "check", tiny_pack, "--key", pub, "--deployed", served, "--json", tmp_path / "ok.json", "--quiet")
    assert ok.rc == 0, ok.out + ok.err
    rows = {c["name"]: c for c in json.loads((tmp_path / "ok.json").read_text())["checks"]}
    assert rows["deployed"]["status"] == "PASS" and rows["deployed"]["required"] is True
    assert rows["oms_signature"]["status"] == "PASS" and rows["oms_signature"]["required"] is False
    assert "(advisory)" in ok.out

    shard = served / "model.safetensors"
    data = bytearray(shard.read_bytes())
    (n,) = struct.unpack("<Q", data[:8])
    victim = "model.layers.0.self_attn.o_proj.weight"
    data[8 + n + json.loads(data[8 : 8 + n])[victim]["data_offsets"][0]] ^= 0x01
    shard.write_bytes(data)
    bad = run_cli(ATTEST, "check", tiny_pack, "--key", pub, "--deployed", served, "--json", tmp_path / "bad.json", "--quiet")
    assert bad.rc == 1 and "CHECK: FAIL" in bad.out
    results = json.loads((tmp_path / "bad.json").read_text())
    rows = {c["name"]: c for c in results["checks"]}
    assert rows["deployed"]["status"] == "FAIL" and victim in rows["deployed"]["summary"]
    assert [f["name"] for f in rows["deployed"]["details"]["findings"]] == [victim]
    assert rows["pack_files"]["status"] == "PASS"  # the pack itself is still the attested one
    assert any(victim in reason for reason in results["verdict_reasons"])
