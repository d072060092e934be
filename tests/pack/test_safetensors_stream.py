"""The streamed shard writer writes exactly the bytes ``safetensors.torch.save`` writes (packs stay reproducible)."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save as save_safetensors

from uc_attest._internal.codec.encoded import EncodedTensor
from uc_attest._internal.codec.params import CodecParams
from uc_attest._internal.compress.blockscale import encode_datafree
from uc_attest._internal.pack.safetensors_stream import SAFETENSORS_DTYPES, StreamingSafetensorsFile
from uc_attest._internal.pack.writer import PackWriter

GOLDEN_PACK_V10 = Path(__file__).parents[1] / "golden" / "pack-v1.0"


def _random(dtype: torch.dtype, shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    if dtype == torch.bool:
        return torch.randint(0, 2, shape, generator=gen).bool()
    if dtype.is_floating_point or dtype.is_complex:
        return torch.randn(shape, generator=gen).to(dtype)
    return torch.randint(0, 100, shape, generator=gen).to(dtype)


def _streamed(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None, order: list[str]) -> bytes:
    out = StreamingSafetensorsFile(path, metadata=metadata)
    for name in order:
        out.add(name, tensors[name])
    written = out.close()
    data = path.read_bytes()
    assert written.size == len(data) and written.sha256 == hashlib.sha256(data).hexdigest()
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no spool or partial file left behind
    return data


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mixed_dtypes_shapes_and_names_are_byte_identical(tmp_path: Path, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    rng = random.Random(seed)
    shapes = [(), (0,), (1,), (3,), (2, 5), (4, 1, 3), (7, 0)]
    names = ["a", "b.codes", "model.layers.0.mlp.down_proj.weight", "Z", "é", "名前", "x.scales", "x.codebook", "_", "0"]
    tensors: dict[str, torch.Tensor] = {}
    for i, dtype in enumerate(SAFETENSORS_DTYPES):  # every dtype the shard accepts, twice, under shuffled names
        for j in range(2):
            name = f"{rng.choice(names)}.{i}.{j}" if j else rng.choice(names) + str(i)
            tensors[name] = _random(dtype, rng.choice(shapes), gen)
    tensors["strided"] = torch.arange(12, dtype=torch.float32).reshape(3, 4).t()  # not contiguous: the writer had .contiguous() it
    order = list(tensors)
    rng.shuffle(order)
    for metadata in ({"format": "uc-pack-codec"}, None):
        target = tmp_path / str(metadata is None) / "s.safetensors"
        target.parent.mkdir()
        assert _streamed(target, tensors, metadata, order) == save_safetensors({k: v.contiguous() for k, v in tensors.items()}, metadata=metadata)


def test_the_golden_pack_shards_are_rewritten_identically(tmp_path: Path) -> None:
    shards = sorted(GOLDEN_PACK_V10.glob("*.safetensors"))
    assert shards
    for shard in shards:
        with safe_open(str(shard), "pt") as handle:
            metadata = handle.metadata()
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
        order = sorted(tensors, reverse=True)  # another arrival order than the file's
        target = tmp_path / shard.name
        assert _streamed(target, tensors, metadata, order) == shard.read_bytes()
        target.unlink()


def test_a_duplicate_name_or_an_unknown_dtype_is_refused(tmp_path: Path) -> None:
    out = StreamingSafetensorsFile(tmp_path / "s.safetensors")
    out.add("a", torch.zeros(2))
    with pytest.raises(ValueError, match="already"):
        out.add("a", torch.ones(2))
    with pytest.raises(ValueError, match="dtype"):
        out.add("b", torch.zeros(2, dtype=torch.complex128))
    out.discard()
    assert list(tmp_path.iterdir()) == []


def test_a_failed_close_leaves_no_shard_under_its_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = StreamingSafetensorsFile(tmp_path / "s.safetensors")
    out.add("a", torch.zeros(1000))

    def broken_fsync(fd: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("uc_attest._internal.pack.safetensors_stream.os.fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        out.close()
    assert list(tmp_path.iterdir()) == []


def test_the_pack_writer_spools_and_keeps_no_tensor(tmp_path: Path) -> None:
    """The writer's open shard holds names and offsets only; its shards equal the library's serialisation."""
    gen = torch.Generator().manual_seed(0)
    weight = torch.randn(32, 64, generator=gen).to(torch.bfloat16)
    writer = PackWriter(tmp_path, shard_bytes=10_000)
    enc: EncodedTensor = encode_datafree(weight, CodecParams(bits=5, block_size=64, block_axis=1, dtype="bfloat16"))[0]
    writer.add_quantized("w", enc, "attention", "sha256:" + "0" * 64)
    norm = torch.ones(64, dtype=torch.bfloat16)
    writer.add_passthrough("n", norm, "norm")
    assert not any(isinstance(v, torch.Tensor) for shard in writer._open.values() for v in vars(shard).values())
    for kind in list(writer._open):
        writer._close(kind)
    codec = (tmp_path / "codec-00001.safetensors").read_bytes()
    expected = {"w.codes": torch.from_numpy(enc.packed_codes.copy()), "w.scales": enc.scales, "w.codebook": enc.codebook}
    assert codec == save_safetensors(expected, metadata={"format": "uc-pack-codec"})
    assert (tmp_path / "passthrough-00001.safetensors").read_bytes() == save_safetensors({"n": norm}, metadata={"format": "uc-pack-passthrough"})
    assert sorted(f.path for f in writer.files) == ["codec-00001.safetensors", "passthrough-00001.safetensors"]
