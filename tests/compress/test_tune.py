"""Tuning a coded block's grids against full-precision outputs (compress/tune.py), and ``uc compress --tune-epochs``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from support.cli import run_cli
from support.calibration import calibration_file, fast_options
from support.models import make_tiny_model
from uc_attest._internal.codec.encoded import EncodedTensor
from uc_attest._internal.codec.params import CodecParams
from uc_attest._internal.codec.reconstruct import reconstruct
from uc_attest._internal.compress import calibrated
from uc_attest._internal.compress.blockscale import encode_datafree
from uc_attest._internal.compress.pipeline import compress_model
from uc_attest._internal.compress.tune import CodedMap, tune_block, unpacked_codes
from uc_attest._internal.evaluate.loading import load_model_dir, load_pack_model, reconstructed_state_dict
from uc_attest._internal.pack.reader import open_pack
from uc_attest._internal.pack.verify import verify_pack


def _mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(32, 48), nn.GELU(), nn.Linear(48, 32)).eval()


def _coded(model: nn.Sequential, bits: int = 3) -> tuple[nn.Sequential, list[CodedMap]]:
    """A copy of the model whose weights are the canonical reconstruction of a data-free coding."""
    coded = _mlp()
    maps = []
    for index in (0, 2):
        weight = model[index].weight.detach()
        enc, _ = encode_datafree(weight, CodecParams(bits=bits, block_size=16, block_axis=1, dtype="float32"))
        with torch.no_grad():
            coded[index].weight.copy_(reconstruct(enc.packed_codes, enc.codebook, enc.scales, enc.shape, enc.params))
        maps.append(CodedMap(f"{index}.weight", enc, unpacked_codes(enc), f"{index}.bias", torch.bfloat16))
    with torch.no_grad():  # biases as stored: bfloat16
        for index in (0, 2):
            coded[index].bias.copy_(coded[index].bias.to(torch.bfloat16))
    return coded, maps


def _setup(batches: int) -> tuple[nn.Sequential, list[CodedMap], list[torch.Tensor], list[torch.Tensor]]:
    """A coded copy of the model, its maps, and ``batches`` input batches with the original model's outputs."""
    original = _mlp()
    coded, maps = _coded(original)
    inputs = [torch.randn(64, 32, generator=torch.Generator().manual_seed(i)) for i in range(batches)]
    with torch.no_grad():
        targets = [original(x) for x in inputs]
    return coded, maps, inputs, targets


def test_tuning_lowers_the_blocks_output_error_and_returns_canonical_codec_state() -> None:
    coded, maps, inputs, targets = _setup(4)
    result = tune_block(coded, maps, lambda i: coded(inputs[i]), lambda i: targets[i], len(inputs), epochs=20)
    assert result.accepted and result.error_after < 0.9 * result.error_before
    for m in maps:
        enc = result.encoded[m.weight_path]
        # same tensor, same width and block size, so the same bits on disk: only the grid moved
        assert enc.shape == m.encoded.shape and enc.params == m.encoded.params
        assert enc.packed_codes.nbytes == m.encoded.packed_codes.nbytes
        assert enc.scales.dtype == torch.float16 and enc.codebook.dtype == torch.float32
        assert bool(torch.all(enc.codebook[1:] > enc.codebook[:-1]))
        assert not torch.equal(enc.codebook, m.encoded.codebook) or not torch.equal(enc.scales, m.encoded.scales)
        bias = result.biases[m.bias_path]  # type: ignore[index]
        assert bias.dtype == torch.bfloat16
    # the error reported is that of the canonical reconstruction of the returned state
    check = _mlp()
    with torch.no_grad():
        for m in maps:
            enc = result.encoded[m.weight_path]
            check.get_parameter(m.weight_path).copy_(reconstruct(enc.packed_codes, enc.codebook, enc.scales, enc.shape, enc.params))
            check.get_parameter(m.bias_path).copy_(result.biases[m.bias_path])  # type: ignore[index]
        error = sum(float(((check(x) - t) ** 2).mean()) for x, t in zip(inputs, targets)) / len(inputs)
    assert error == pytest.approx(result.error_after, rel=1e-5)
    # and the block's own parameters were left as they were
    assert torch.equal(coded[0].weight, reconstruct(maps[0].encoded.packed_codes, maps[0].encoded.codebook,
                                                    maps[0].encoded.scales, maps[0].encoded.shape, maps[0].encoded.params))  # fmt: skip
    assert isinstance(coded[0].weight, nn.Parameter)


def test_codes_keep_their_codebook_entry_through_the_renumbering() -> None:
    coded, maps, inputs, targets = _setup(2)
    result = tune_block(coded, maps, lambda i: coded(inputs[i]), lambda i: targets[i], 2, epochs=5)
    for m in maps:
        tuned = unpacked_codes(result.encoded[m.weight_path])
        # two weights share a code after tuning exactly when they shared one before
        pairs_before = m.codes.flatten()[:, None] == m.codes.flatten()[None, :]
        pairs_after = tuned.flatten()[:, None] == tuned.flatten()[None, :]
        assert torch.equal(pairs_before, pairs_after)


def test_a_block_that_cannot_improve_is_left_as_it_was() -> None:
    original = _mlp()
    coded, maps = _coded(original)
    inputs = [torch.randn(16, 32)]
    with torch.no_grad():
        targets = [coded(inputs[0])]  # already exact: nothing to gain
    result = tune_block(coded, maps, lambda i: coded(inputs[i]), lambda i: targets[i], 1, epochs=3)
    assert not result.accepted and result.error_before == 0.0
    assert all(result.encoded[m.weight_path] is m.encoded for m in maps)
    assert result.error_after >= result.error_before


def test_zero_epochs_changes_nothing() -> None:
    original = _mlp()
    coded, maps = _coded(original)
    x = torch.randn(8, 32)
    result = tune_block(coded, maps, lambda i: coded(x), lambda i: original(x).detach(), 1, epochs=0)
    assert not result.accepted and result.error_after == result.error_before


@pytest.mark.slow  # the calibrated compressor
def test_uc_compress_tune_epochs_records_lowers_the_output_error_and_verifies(tmp_path: Path) -> None:
    """GPT-2 (Conv1D maps with biases): tuned grids and biases in the pack, canonical, closer to the original model."""
    model_dir = make_tiny_model("gpt2", tmp_path / "model")
    plain_opts = fast_options(tmp_path, bits=3)
    compress_model(model_dir, tmp_path / "plain", plain_opts, progress=False)
    manifest = compress_model(model_dir, tmp_path / "tuned", plain_opts.model_copy(update={"tune_epochs": 3}), progress=False)
    assert verify_pack(tmp_path / "tuned", progress=False).report.ok
    cal = manifest.compression.calibration
    assert cal["tune_epochs"] == 3 and cal["tuned_blocks"] == 2
    assert open_pack(tmp_path / "plain").manifest.compression.calibration["tune_epochs"] == 0
    plain, tuned = (reconstructed_state_dict(open_pack(tmp_path / n)) for n in ("plain", "tuned"))
    assert plain.keys() == tuned.keys()
    assert not torch.equal(plain["transformer.h.0.attn.c_attn.weight"], tuned["transformer.h.0.attn.c_attn.weight"])
    assert not torch.equal(plain["transformer.h.0.attn.c_attn.bias"], tuned["transformer.h.0.attn.c_attn.bias"])
    assert torch.equal(plain["transformer.h.0.ln_1.weight"], tuned["transformer.h.0.ln_1.weight"])  # only coded maps and their biases move
    ids, _ = calibrated.calibration_ids(model_dir, plain_opts, 160)
    with torch.no_grad():
        ref = load_model_dir(model_dir).float()(input_ids=ids).logits
        errors = {n: float(((load_pack_model(tmp_path / n).float()(input_ids=ids).logits - ref) ** 2).mean()) for n in ("plain", "tuned")}
    assert errors["tuned"] < errors["plain"]


@pytest.mark.slow  # the calibrated compressor
def test_tuned_weights_propagated_are_the_canonical_reconstruction(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """After tuning, the weights and biases the next block's inputs come from are those the pack rebuilds."""
    model_dir = make_tiny_model("gpt2", tmp_path / "model")
    seen: dict[str, torch.Tensor] = {}
    original_run = calibrated.BlockCoder.run

    def spy(self, hidden, kwargs, batch, *, stop_early, replay=True):  # type: ignore[no-untyped-def]
        out = original_run(self, hidden, kwargs, batch, stop_early=stop_early, replay=replay)
        if not stop_early:  # the last full run of a block is the one whose output goes on: keep its parameters
            for name, p in self.block.named_parameters():
                seen[f"{self.prefix}.{self.block_index}.{name}"] = p.detach().clone()
        return out

    monkeypatch.setattr(calibrated.BlockCoder, "run", spy)
    monkeypatch.setattr(calibrated.BlockCoder, "block_index", property(lambda self: int(self._index)), raising=False)
    original_init = calibrated.BlockCoder.__init__

    def init(self, model, block, prefix, *args, **kwargs):  # type: ignore[no-untyped-def]
        original_init(self, model, block, prefix, *args, **kwargs)
        self._index = next(i for i, b in enumerate(model.get_submodule(prefix)) if b is block)

    monkeypatch.setattr(calibrated.BlockCoder, "__init__", init)
    compress_model(model_dir, tmp_path / "pack", fast_options(tmp_path, tune_epochs=2, calibration_dtype="float32"), progress=False)
    rebuilt = reconstructed_state_dict(open_pack(tmp_path / "pack"))
    checked = 0
    for name, value in seen.items():
        key = name
        if key in rebuilt and (".attn." in key or ".mlp." in key):
            assert torch.equal(value, rebuilt[key].to(value.dtype)), key
            checked += 1
    assert checked >= 16  # c_attn, c_proj, c_fc, mlp.c_proj: weight and bias, in both blocks


@pytest.mark.slow  # the calibrated compressor
def test_cli_tune_epochs_is_parsed_and_bad_values_exit_2(tmp_path: Path) -> None:
    model_dir = make_tiny_model("llama", tmp_path / "model")
    common = ["--samples", "6", "--seq-len", "48", "--calibration", str(calibration_file(tmp_path)), "--quiet"]
    proc = run_cli("uc", "compress", str(model_dir), "-o", str(tmp_path / "p"), "--tune-epochs", "1", *common)
    assert proc.rc == 0, proc.err
    assert open_pack(tmp_path / "p").manifest.compression.calibration["tune_epochs"] == 1
    for wrong in (["--tune-epochs", "-1"], ["--tune-epochs", "2", "--method", "datafree"]):
        bad = run_cli("uc", "compress", str(model_dir), "-o", str(tmp_path / "q"), *wrong, *common)
        assert bad.rc == 2 and "Traceback" not in bad.err and len(bad.err.strip().splitlines()) == 1, bad.err
        assert not (tmp_path / "q").exists()
    with pytest.raises(ValueError, match="calibrated"):
        fast_options(tmp_path, method="datafree", tune_epochs=1)


def test_encoded_tensor_round_trip_of_unpacked_codes() -> None:
    codes = torch.randint(0, 8, (6, 20), dtype=torch.uint8)
    enc = EncodedTensor.from_codes(codes, torch.linspace(-1, 1, 8), torch.ones(6, 2, dtype=torch.float16),
                                   CodecParams(bits=3, block_size=16, block_axis=1, dtype="float32"))  # fmt: skip
    assert torch.equal(unpacked_codes(enc), codes.to(torch.int64))


def test_entry_lookup_gives_the_indexing_values_and_the_per_entry_gradient_sums() -> None:
    """The codebook lookup the tuning differentiates: same values as codebook[codes], gradient = per-entry sums."""
    from torch.autograd import gradcheck

    from uc_attest._internal.compress.tune import _EntryLookup

    gen = torch.Generator().manual_seed(5)
    codebook = torch.randn(16, generator=gen, dtype=torch.float64, requires_grad=True)
    codes = torch.randint(0, 16, (9, 33), generator=gen)
    codes[0, 0] = 15  # the last entry is used; entry 3 is not, and gets a zero gradient
    codes[codes == 3] = 4
    grad = torch.randn(9, 33, generator=gen, dtype=torch.float64)
    looked_up = _EntryLookup.apply(codebook, codes)
    assert torch.equal(looked_up, codebook.detach()[codes])
    looked_up.backward(grad)
    expected = torch.zeros(16, dtype=torch.float64).index_add_(0, codes.reshape(-1), grad.reshape(-1))
    assert torch.allclose(codebook.grad, expected, rtol=1e-12, atol=1e-12)
    assert float(codebook.grad[3]) == 0.0
    assert gradcheck(lambda c: _EntryLookup.apply(c, codes), (codebook.detach().clone().requires_grad_(True),))
    # float32, as the tuning runs it: the same values, and every step's gradient repeats bit for bit
    cb32 = codebook.detach().to(torch.float32).requires_grad_(True)
    grads = []
    for _ in range(2):
        cb32.grad = None
        _EntryLookup.apply(cb32, codes).backward(grad.to(torch.float32))
        grads.append(cb32.grad.clone())
    assert torch.equal(grads[0], grads[1])
