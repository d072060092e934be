"""``uc export`` and ``uc verify --deployed``: a served copy of the pack, proven tensor by tensor."""

from __future__ import annotations

import functools
import json
import shutil
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from support.cli import CliResult, run_cli

import uc_attest
from uc_attest._internal.pack.deployed import verify_deployed
from uc_attest._internal.pack.export import export_pack
from uc_attest._internal.pack.reader import open_pack
from uc_attest._internal.errors import UsageError

pytestmark = pytest.mark.slow  # the shared signed delivery (tests/conftest.py)


@pytest.fixture()
def pack(tiny_pack: Path) -> Path:
    return tiny_pack


@pytest.fixture()
def uc() -> Callable[..., CliResult]:
    return functools.partial(run_cli, "uc")


def _tensors(directory: Path) -> dict[str, torch.Tensor]:
    out = {}
    for shard in sorted(directory.glob("*.safetensors")):
        with safe_open(str(shard), "pt") as f:
            out.update({k: f.get_tensor(k) for k in f.keys()})  # noqa: SIM118 (safe_open has no __iter__)
    return out


def _slot_offset(shard: Path, name: str) -> int:
    """Absolute file offset of the first byte of tensor ``name`` in a safetensors file."""
    data = shard.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    return 8 + n + header[name]["data_offsets"][0]


def test_export_loads_in_transformers_with_the_packs_exact_weights(pack: Path, tmp_path: Path, uc) -> None:  # type: ignore[no-untyped-def]
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "served"
    result = uc("export", pack, "-o", out, "--quiet")
    assert result.rc == 0, result.err
    assert {"config.json", "tokenizer.json", "model.safetensors"} <= {p.name for p in out.iterdir()}
    served = AutoModelForCausalLM.from_pretrained(str(out), dtype="auto").eval()
    reference = uc_attest.load_model(pack)
    assert served.dtype == torch.bfloat16
    ref_state = reference.state_dict()
    for name, tensor in served.state_dict().items():
        assert torch.equal(tensor, ref_state[name]), name
    ids = AutoTokenizer.from_pretrained(str(out))("The pack is verified", return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.equal(served(ids).logits, reference(ids).logits)


def test_export_is_sharded_atomic_and_refuses_to_overwrite(pack: Path, tmp_path: Path, uc) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "served"
    report = export_pack(pack, out, max_shard_bytes=40_000)
    shards = sorted(p.name for p in out.glob("*.safetensors"))
    assert len(shards) > 2 and shards[0].startswith("model-00001-of-")
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"]) == {t.name for t in open_pack(pack).manifest.tensors}
    assert report.tensors == len(index["weight_map"])
    assert verify_deployed(open_pack(pack), out).ok
    again = uc("export", pack, "-o", out)
    assert again.rc == 2 and "already exists" in again.err and len(again.err.strip().splitlines()) == 1
    assert sorted(p.name for p in out.glob("*.safetensors")) == shards


def test_export_of_a_tampered_pack_writes_nothing(pack: Path, tmp_path: Path, uc) -> None:  # type: ignore[no-untyped-def]
    codec = pack / "codec-00001.safetensors"
    offset = _slot_offset(codec, _first_codes_key(pack))
    data = bytearray(codec.read_bytes())
    data[offset] ^= 0xFF
    codec.write_bytes(data)
    result = uc("export", pack, "-o", tmp_path / "served")
    assert result.rc == 1 and "digest differs" in result.err
    assert not (tmp_path / "served").exists() and not list(tmp_path.glob(".served*"))


def _first_codes_key(pack: Path) -> str:
    manifest = json.loads((pack / "ucpack.json").read_text())
    return next(t["storage"]["codes"] for t in manifest["tensors"] if t["kind"] == "quantized")


def test_deployed_passes_for_any_sharding_and_order(pack: Path, tmp_path: Path, uc) -> None:  # type: ignore[no-untyped-def]
    exported = tmp_path / "served"
    export_pack(pack, exported)
    tensors = _tensors(exported)
    names = sorted(tensors, reverse=True)
    resharded = tmp_path / "resharded"
    resharded.mkdir()
    for i in range(3):
        save_file({n: tensors[n] for n in names[i::3]}, str(resharded / f"part{i}.safetensors"), metadata={"format": "pt"})
    for side in ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(exported / side, resharded / side)
    unindexed = uc("verify", pack, "--deployed", resharded, "--quiet")  # which of three shards a loader reads is ambiguous
    assert unindexed.rc == 1 and "only shard must be model.safetensors" in unindexed.out
    weight_map = {n: f"part{i}.safetensors" for i in range(3) for n in names[i::3]}
    (resharded / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": 1}, "weight_map": weight_map}))
    result = uc("verify", pack, "--deployed", resharded, "--quiet")
    assert result.rc == 0, result.out
    assert "VERIFY: PASS" in result.out and f"{len(tensors)}/{len(tensors)} attested tensors" in result.out


def test_changed_byte_in_an_exported_shard_fails_naming_the_tensor(pack: Path, tmp_path: Path, uc) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "served"
    export_pack(pack, out)
    shard = out / "model.safetensors"
    victim = "model.layers.1.mlp.down_proj.weight"
    data = bytearray(shard.read_bytes())
    data[_slot_offset(shard, victim) + 10] ^= 0x01
    shard.write_bytes(data)
    result = uc("verify", pack, "--deployed", out, "--quiet")
    assert result.rc == 1
    assert f"FAIL: deployed {victim}: its bytes in model.safetensors do not rebuild to the attested digest" in result.out
    assert result.out.strip().endswith("VERIFY: FAIL")
    assert sum(line.startswith("FAIL:") for line in result.out.splitlines()) == 1  # only that tensor


def test_missing_extra_retyped_and_duplicate_tensors_are_named(pack: Path, tmp_path: Path) -> None:
    out = tmp_path / "served"
    export_pack(pack, out)
    tensors = _tensors(out)
    (out / "model.safetensors").unlink()
    gone, widened, twice = "model.norm.weight", "model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight"
    rest = {n: t for n, t in tensors.items() if n != gone}
    rest[widened] = rest[widened].float()
    rest["lm_head.extra"] = torch.zeros(2, dtype=torch.bfloat16)
    save_file(rest, str(out / "a.safetensors"))
    save_file({twice: tensors[twice]}, str(out / "b.safetensors"))
    report = verify_deployed(open_pack(pack), out)
    assert not report.ok
    found = {(f.name, f.status) for f in report.findings}
    assert found == {(gone, "missing"), (widened, "differs"), ("lm_head.extra", "extra"), (twice, "duplicate")}
    assert report.tensors_matching == len(tensors) - 2


def test_save_pretrained_of_load_model_passes_with_the_packs_tokenizer(pack: Path, tmp_path: Path, uc) -> None:  # type: ignore[no-untyped-def]
    saved = tmp_path / "saved"
    uc_attest.load_model(pack).save_pretrained(str(saved))
    result = uc("verify", pack, "--deployed", saved, "--quiet")
    assert result.rc == 1 and "FAIL: deployed tokenizer.json: the pack has it" in result.out
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(pack / name, saved / name)
    result = uc("verify", pack, "--deployed", saved, "--quiet")
    assert result.rc == 0, result.out


def test_changed_config_or_tokenizer_and_unreadable_weights_fail(pack: Path, tmp_path: Path) -> None:
    out = tmp_path / "served"
    export_pack(pack, out)
    config = json.loads((out / "config.json").read_text())
    config["transformers_version"] = "0.0.1"  # a file of the pack is its attested bytes: any other bytes fail
    (out / "config.json").write_text(json.dumps(config, indent=4))
    report = verify_deployed(open_pack(pack), out)
    assert not report.ok and {f.path: f.status for f in report.files}["config.json"] == "differs"
    config["rms_norm_eps"] = 0.5
    (out / "config.json").write_text(json.dumps(config))
    (out / "tokenizer.json").write_bytes((out / "tokenizer.json").read_bytes().replace(b"<eos>", b"<EOS>"))
    (out / "pytorch_model.bin").write_bytes(b"\0" * 16)
    (out / "README.md").write_text("hello")
    statuses = {f.path: f.status for f in verify_deployed(open_pack(pack), out).files}
    assert statuses["config.json"] == "differs" and statuses["tokenizer.json"] == "differs"
    assert statuses["pytorch_model.bin"] == "uncheckable-weights" and statuses["README.md"] == "inert"


def test_deployed_usage_errors(pack: Path, tmp_path: Path, uc) -> None:  # type: ignore[no-untyped-def]
    result = uc("verify", pack, "--deployed", tmp_path / "nowhere", "--quiet")
    assert result.rc == 2 and "no such model directory" in result.err
    bad = tmp_path / "bad"
    export_pack(pack, bad)
    (bad / "model.safetensors").write_bytes(b"\x05\0\0\0\0\0\0\0{}")
    result = uc("verify", pack, "--deployed", bad, "--quiet")
    assert result.rc == 1 and "FAIL: deployed model.safetensors:" in result.out
    with pytest.raises(UsageError, match="shard size"):
        export_pack(pack, tmp_path / "x", max_shard_bytes=0)
    inside = uc("export", pack, "-o", pack / "served")
    assert inside.rc == 2 and "inside the pack" in inside.err and not (pack / "served").exists()


def test_the_required_row_of_attest_check(pack: Path, tmp_path: Path) -> None:
    from uc_attest._internal.check.deploy_checks import deployed_check
    from uc_attest._internal.check.results import CheckStatus

    out = tmp_path / "served"
    export_pack(pack, out)
    attested = open_pack(pack).manifest_sha256
    row = deployed_check(pack, out, attested)
    assert (row.name, row.status, row.required) == ("deployed", CheckStatus.PASS, True)
    assert deployed_check(pack, out, "0" * 64).status is CheckStatus.FAIL  # not the attested manifest
    assert deployed_check(pack, out, None).status is CheckStatus.SKIP
    (out / "config.json").write_text("{}")
    row = deployed_check(pack, out, attested)
    assert row.status is CheckStatus.FAIL and "config.json" in row.summary
    assert deployed_check(pack, tmp_path / "nowhere", attested).status is CheckStatus.FAIL


@pytest.mark.timeout(60)
def test_fifos_and_symlinks_in_the_deployed_directory_fail_without_blocking(pack: Path, tmp_path: Path) -> None:
    import os

    out = tmp_path / "served"
    export_pack(pack, out)
    (out / "config.json").unlink()
    os.mkfifo(out / "config.json")
    os.mkfifo(out / "extra.safetensors")
    (out / "model.safetensors").rename(tmp_path / "elsewhere.safetensors")
    (out / "model.safetensors").symlink_to(tmp_path / "elsewhere.safetensors")
    statuses = {f.path: f.status for f in verify_deployed(open_pack(pack), out).files}
    assert statuses["config.json"] == "unreadable"
    assert statuses["extra.safetensors"] == "unreadable" and statuses["model.safetensors"] == "unreadable"
