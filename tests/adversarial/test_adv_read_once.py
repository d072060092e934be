"""Read once: a file's hash and its use come from the same bytes, read once.

A file swapped on disk between hashing and loading must not slip through: the
loader parses the very buffer it hashed, so a swap after the read changes
nothing that is used, and a change during the read is refused.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from uc_attest._internal.codec.reconstruct import tensor_digest
from uc_attest._internal.evaluate.settings import EvalSettings

pytestmark = pytest.mark.slow  # the shared signed delivery (tests/conftest.py)


def _swap_in(src_pack: Path, dest_pack: Path) -> None:
    """Replace every file of ``dest_pack`` by the file of the same name in ``src_pack`` (another model)."""
    for p in src_pack.iterdir():
        shutil.copyfile(p, dest_pack / p.name)


def test_loader_uses_the_bytes_it_hashed_even_when_the_file_is_swapped_after_reading(
    site: Any, other_delivery_root: tuple[Path, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    import uc_attest._internal.evaluate.loading as loading
    from uc_attest._internal.pack.reader import open_pack

    pack = open_pack(site.pack)
    real_read = loading.read_pack_file
    real_decode = loading.decode_shard
    hashed: dict[str, tuple[int, str]] = {}
    used: dict[str, int] = {}

    def read_then_swap(p: Any, entry: Any) -> Any:
        data, problems = real_read(p, entry)
        hashed[entry.path] = (id(data), hashlib.sha256(data).hexdigest())
        # The attacker's swap lands right after the hash: the file on disk is now another model's.
        shutil.copyfile(other_delivery_root[0] / "pack" / entry.path, site.pack / entry.path)
        return data, problems

    def decode_spy(p: Any, entry: Any, data: Any) -> Any:
        used[entry.path] = id(data)
        return real_decode(p, entry, data)

    monkeypatch.setattr(loading, "read_pack_file", read_then_swap)
    monkeypatch.setattr(loading, "decode_shard", decode_spy)
    state = loading.reconstructed_state_dict(pack)
    assert used and used == {k: v[0] for k, v in hashed.items()}  # decoded from the very buffer that was hashed
    for path, (_id, sha) in hashed.items():
        assert sha == pack.manifest.file(path).sha256
        assert hashlib.sha256((site.pack / path).read_bytes()).hexdigest() != sha  # the disk did change
    for t in pack.manifest.tensors:
        assert tensor_digest(state[t.name]) == t.digest  # and the weights are still the signed ones


def test_a_file_that_grows_while_being_read_is_refused(site: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from uc_attest._internal.pack import reader

    target = next(site.pack.glob("codec-*.safetensors"))
    real_readv = os.readv
    calls = {"n": 0}

    def readv_and_append(fd: int, buffers: Any) -> int:
        calls["n"] += 1
        if calls["n"] == 1:
            with open(target, "ab") as fh:
                fh.write(b"\0" * 64)
        return real_readv(fd, buffers)

    monkeypatch.setattr(os, "readv", readv_and_append)
    with pytest.raises(OSError, match="changed size"):
        reader.read_regular_file(target)


def test_a_file_that_shrinks_while_being_read_is_refused(site: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from uc_attest._internal.pack import reader

    target = next(site.pack.glob("codec-*.safetensors"))
    real_readv = os.readv

    def readv_after_truncate(fd: int, buffers: Any) -> int:
        os.truncate(target, 100)
        return real_readv(fd, buffers)

    monkeypatch.setattr(os, "readv", readv_after_truncate)
    with pytest.raises(OSError, match="changed size"):
        reader.read_regular_file(target)


def test_loading_a_pack_swapped_before_reading_fails_on_its_hash(site: Any, other_delivery_root: tuple[Path, Any]) -> None:
    """The opened manifest pins the bytes: a shard swapped after open_pack and before the read is refused."""
    from uc_attest._internal.errors import VerificationError
    from uc_attest._internal.evaluate.loading import load_pack_model
    from uc_attest._internal.pack.reader import open_pack

    pack = open_pack(site.pack)
    codec = next(site.pack.glob("codec-*.safetensors"))
    shutil.copyfile(other_delivery_root[0] / "pack" / codec.name, codec)
    with pytest.raises(VerificationError, match="SHA-256"):
        load_pack_model(pack)


def test_token_ids_come_from_the_bytes_whose_hash_is_compared(site: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    import uc_attest._internal.evaluate.tokens as tokens

    original_ids, _meta, expected = tokens.load_token_file(site.tokens)
    forged = tokens.token_file_bytes(torch.zeros(original_ids.numel(), dtype=torch.int64), {})
    real = tokens.read_regular_file

    def read_then_swap(path: Path, *args: Any) -> Any:
        data = real(path, *args)
        Path(path).write_bytes(forged)  # swapped right after the read
        return data

    monkeypatch.setattr(tokens, "read_regular_file", read_then_swap)
    ids, _meta, sha = tokens.load_token_file(site.tokens)
    assert sha == expected and torch.equal(ids, original_ids)
    assert site.tokens.read_bytes() == forged


@pytest.mark.parametrize("streaming", [True, False], ids=["streaming", "whole-model"])
def test_check_measures_the_pack_it_verified(site: Any, other_delivery_root: tuple[Path, Any], monkeypatch: pytest.MonkeyPatch,
                                             tmp_path: Path, streaming: bool) -> None:  # fmt: skip
    """Swap the whole pack (manifest and shards, internally consistent) between verification and measurement.

    The check must either measure exactly the weights it verified, or fail.
    A lenient policy (wide perplexity tolerance) makes the difference visible:
    with it, only the bit-exact weights guarantee what was measured. Both
    evaluation paths: streaming (each block rebuilt again, pinned to the
    verified digests) and whole-model (pinned to the verified manifest).
    """
    import uc_attest._internal.evaluate.measure as measure
    import uc_attest._internal.evaluate.perplexity as perplexity
    import uc_attest._internal.pack.tensor_reader as tensor_reader
    from uc_attest._internal.attest.trust import KeyAnchor
    from uc_attest._internal.check.run import CheckInputs, run_check
    from uc_attest._internal.policy import load_policy

    measured: dict[str, str] = {}
    real_measure = measure.measure_pack
    real_eval = perplexity.evaluate_tokens
    real_block_load = tensor_reader.VerifiedTensorReader.load

    def swap_then_measure(verified: Any, *args: Any, **kwargs: Any) -> Any:
        _swap_in(other_delivery_root[0] / "pack", site.pack)
        return real_measure(verified, *args, **kwargs)

    def spy_eval(model: Any, *args: Any, **kwargs: Any) -> Any:
        for name, tensor in model.state_dict().items():
            measured[name] = tensor_digest(tensor)
        return real_eval(model, *args, **kwargs)

    def spy_block_load(self: Any, names: Any) -> Any:
        tensors = real_block_load(self, names)
        measured.update({name: tensor_digest(t) for name, t in tensors.items()})
        return tensors

    monkeypatch.setattr(measure, "measure_pack", swap_then_measure)
    monkeypatch.setattr(perplexity, "evaluate_tokens", spy_eval)
    monkeypatch.setattr(tensor_reader.VerifiedTensorReader, "load", spy_block_load)
    policy = tmp_path / "lenient.toml"
    policy.write_text("version = 1\nname = \"lenient\"\n[perplexity]\nrelative_tolerance = 0.99\nabsolute_tolerance = 10.0\n")
    outcome = run_check(CheckInputs(pack=site.pack, bundle=site.bundle, tokens=site.tokens, trust=KeyAnchor(site.key), policy=load_policy(str(policy)),
                                    evaluation=EvalSettings(streaming=streaming, progress=False)))  # fmt: skip
    # the weights are pinned to the verified pack, so the swap fails the check
    ppl = next(c for c in outcome.results.checks if c.name == "perplexity_match")
    assert outcome.results.verdict.value == "FAIL" and ppl.status.value == "FAIL", ppl
    assert "changed after it was verified" in ppl.summary and not measured


def test_loader_refuses_a_config_swapped_after_the_pack_was_opened(site: Any) -> None:
    """The config decides how the weights are used (activation, norm epsilon, rope); it must be the hashed one."""
    import json

    from uc_attest._internal.errors import UcError
    from uc_attest._internal.evaluate.loading import load_pack_model
    from uc_attest._internal.pack.reader import open_pack

    pack = open_pack(site.pack)  # what sign and check hold after verifying
    config = json.loads((site.pack / "config.json").read_bytes())
    config["rms_norm_eps"] = 0.5
    config["hidden_act"] = "relu"
    (site.pack / "config.json").write_text(json.dumps(config))
    try:
        model = load_pack_model(pack)
    except UcError:
        return  # refused: what we want
    assert model.config.hidden_act != "relu", "the model was built from a config whose hash was never checked"
