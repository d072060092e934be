"""Architecture matrix: compress, verify, load back; logits equal a directly reconstructed model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from support.reference_codec import ref_reconstruct
from support.models import ARCHITECTURES, make_tiny_model
from uc_attest import load_model
from uc_attest._internal.architecture import load_config
from uc_attest._internal.compress.options import CompressOptions
from uc_attest._internal.compress.pipeline import compress_model
from uc_attest._internal.evaluate.loading import model_from_state_dict
from uc_attest._internal.pack.verify import verify_pack

FAST = CompressOptions(method="calibrated", samples=4, seq_len=32)


def independent_state_dict(pack: Path) -> dict[str, torch.Tensor]:
    """Reconstruct every tensor with the numpy reference straight from the shard files."""
    manifest = json.loads((pack / "ucpack.json").read_text())
    state = {}
    for t in manifest["tensors"]:
        st = t["storage"]
        with safe_open(str(pack / st["file"]), framework="np") as f:
            if t["kind"] == "passthrough":
                with safe_open(str(pack / st["file"]), framework="pt") as g:
                    state[t["name"]] = g.get_tensor(st["key"])
                continue
            c = t["codec"]
            out = ref_reconstruct(f.get_tensor(st["codes"]), f.get_tensor(st["codebook"]), f.get_tensor(st["scales"]),
                                  tuple(t["shape"]), c["bits"], c["block_size"], c["block_axis"], c["dtype"],
                                  None if c.get("transform") is None else (c["transform"]["size"], c["transform"]["seed"]))  # fmt: skip
            assert c["dtype"] == "bfloat16"
            state[t["name"]] = torch.from_numpy(out.view(np.int16)).view(torch.bfloat16)
    return state


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_compress_verify_load_matches_direct_reconstruction(arch: str, tmp_path: Path) -> None:
    model_dir = make_tiny_model(arch, tmp_path / "model")
    pack = tmp_path / "pack"
    manifest = compress_model(model_dir, pack, FAST, progress=False)
    report = verify_pack(pack, progress=False, architecture=True).report
    assert report.ok, report.failures
    quantized = [t for t in manifest.tensors if t.kind == "quantized"]
    assert quantized, "every architecture has linear maps to quantize"
    assert all(t.role in ("linear", "conv1d", "experts") for t in quantized)
    loaded = load_model(pack)
    reference = model_from_state_dict(load_config(pack / "config.json"), independent_state_dict(pack), torch.bfloat16)
    ids = torch.randint(0, 160, (1, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(loaded(input_ids=ids).logits, reference(input_ids=ids).logits)
        original = load_model_dir_logits(model_dir, ids)
    # the pack is an approximation of the original, not a different model
    assert torch.nn.functional.cosine_similarity(
        loaded(input_ids=ids).logits.float().flatten(), original.float().flatten(), dim=0
    ) > 0.9


def load_model_dir_logits(model_dir: Path, ids: torch.Tensor) -> torch.Tensor:
    from uc_attest._internal.evaluate.loading import load_model_dir

    return load_model_dir(model_dir)(input_ids=ids).logits


def test_roles_are_decided_by_module_type(tmp_path: Path) -> None:
    gpt2 = compress_model(make_tiny_model("gpt2", tmp_path / "g"), tmp_path / "gp", FAST, progress=False)
    conv = [t for t in gpt2.tensors if t.role == "conv1d"]
    assert conv and all(t.codec is not None and t.codec.block_axis == 0 for t in conv)
    mamba = compress_model(make_tiny_model("mamba", tmp_path / "m"), tmp_path / "mp", FAST, progress=False)
    by_name = {t.name: t for t in mamba.tensors}
    a_log = next(n for n in by_name if n.endswith("A_log"))
    conv1d = next(n for n in by_name if n.endswith("conv1d.weight"))
    assert by_name[a_log].kind == "passthrough"
    assert by_name[conv1d].kind == "passthrough"  # a convolution kernel is not a linear map
    assert any(n.endswith("in_proj.weight") and t.kind == "quantized" for n, t in by_name.items())
    mixtral = compress_model(make_tiny_model("mixtral", tmp_path / "x"), tmp_path / "xp", FAST, progress=False)
    experts = [t for t in mixtral.tensors if t.role == "experts"]
    assert experts and all(t.kind == "quantized" for t in experts)
    assert all(t.kind == "passthrough" for t in mixtral.tensors if t.role == "router")


@pytest.mark.parametrize("change", ["drop", "add", "rename"])
def test_missing_extra_or_renamed_tensor_fails(change: str, tmp_path: Path) -> None:
    from uc_attest._internal.pack.manifest import PackManifest
    from uc_attest._internal.pack.strict_json import dumps_canonical

    pack = tmp_path / "pack"
    compress_model(make_tiny_model("llama", tmp_path / "model"), pack, FAST, progress=False)
    manifest = PackManifest.model_validate_json((pack / "ucpack.json").read_text())
    data = manifest.model_dump(mode="json")
    tensors = data["tensors"]
    if change == "drop":
        victim = next(t for t in tensors if t["name"].endswith("q_proj.weight"))
        tensors.remove(victim)
    elif change == "add":
        extra = dict(next(t for t in tensors if t["name"].endswith("norm.weight")))
        extra["name"] = "model.layers.9.input_layernorm.weight"
        tensors.append(extra)
    else:
        t = next(t for t in tensors if t["name"].endswith("k_proj.weight"))
        t["name"] = t["name"].replace("k_proj", "kk_proj")
    (pack / "ucpack.json").write_bytes(dumps_canonical(data))
    report = verify_pack(pack, progress=False, architecture=True).report
    assert not report.ok
    assert report.failures
