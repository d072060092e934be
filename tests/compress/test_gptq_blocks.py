"""The GPTQ codebook coder and the block machinery, in isolation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from support.models import make_tiny_model
from uc_attest._internal.architecture import load_config
from uc_attest._internal.codec.encoded import reconstruct_encoded
from uc_attest._internal.codec.params import CodecParams
from uc_attest._internal.codec.reconstruct import reconstruct
from uc_attest._internal.evaluate.blocks import build_calibration_skeleton, find_blocks
from uc_attest._internal.compress.blockscale import encode_datafree
from uc_attest._internal.compress import gptq as gptq_module
from uc_attest._internal.compress.gptq import gptq_quantize, gptq_quantize_group, hessian_error


def _problem(rows: int = 48, cols: int = 128, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2048, cols, generator=g) * (torch.rand(cols, generator=g) * 3 + 0.1)
    x[:, :8] += torch.randn(2048, 1, generator=g)  # correlated inputs, where error feedback helps
    w = torch.randn(rows, cols, generator=g) * 0.05
    return w, x.t() @ x / x.shape[0]


def test_gptq_lowers_output_error_below_datafree() -> None:
    w, h = _problem()
    params = CodecParams(bits=4, block_size=64, block_axis=1)
    enc, codes = gptq_quantize(w, params, h)
    gptq_err = hessian_error(w, reconstruct_encoded(enc, codes).float(), h.double())
    enc_df, codes_df = encode_datafree(w, params)
    df_err = hessian_error(w, reconstruct_encoded(enc_df, codes_df).float(), h.double())
    assert gptq_err < 0.8 * df_err


def test_massive_activation_columns_do_not_own_the_codebook(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two input features a million times stronger than the rest (as in SmolLM2's down_proj).

    On SmolLM2 the raw Hessian-diagonal weighting let such columns own the codebook
    (900x worse than plain rounding on layer 11); here the raw weighting happens to
    be the better one. Either way the coder must try both and keep the better.
    """
    g = torch.Generator().manual_seed(3)
    cols = 256
    x = torch.randn(4096, cols, generator=g) * 0.1
    x[:, 7] *= 1500.0
    x[:, 100] *= 500.0
    h = x.t() @ x / x.shape[0]
    w = torch.randn(64, cols, generator=g) * 0.05
    params = CodecParams(bits=5, block_size=64, block_axis=1)
    enc, codes = gptq_quantize(w, params, h)
    gptq_err = hessian_error(w, reconstruct_encoded(enc, codes).float(), h.double())
    enc_df, codes_df = encode_datafree(w, params)
    df_err = hessian_error(w, reconstruct_encoded(enc_df, codes_df).float(), h.double())
    assert gptq_err < df_err
    # and the weights as a whole stay close: the grid still fits the ordinary columns
    rel = float((reconstruct_encoded(enc, codes).float() - w).norm() / w.norm())
    assert rel < 0.2
    # both importance weightings were tried, and the coder kept the better one
    candidates = gptq_module.importance_candidates(h.double().diagonal())
    assert len(candidates) == 2
    singles = []
    for only in candidates:
        monkeypatch.setattr(gptq_module, "importance_candidates", lambda _d, only=only: [only])
        e, c = gptq_quantize(w, params, h)
        singles.append(hessian_error(w, reconstruct_encoded(e, c).float(), h.double()))
    assert gptq_err <= min(singles) * (1 + 1e-9)


def test_packed_codes_reconstruct_like_the_unpacked_ones() -> None:
    w, h = _problem()
    params = CodecParams(bits=5, block_size=64, block_axis=1)
    enc, codes = gptq_quantize(w, params, h, act_order=True)
    packed = reconstruct(enc.packed_codes, enc.codebook, enc.scales, enc.shape, params)
    assert torch.equal(packed, reconstruct_encoded(enc, codes))
    assert torch.all(enc.codebook[1:] > enc.codebook[:-1])


def test_group_equals_separate_sweeps_and_transposed_layout() -> None:
    w, h = _problem()
    p = CodecParams(bits=5, block_size=32, block_axis=1)
    together = gptq_quantize_group([w[:16], w[16:]], [p, p], h)
    alone = [gptq_quantize(w[:16], p, h), gptq_quantize(w[16:], p, h)]
    for (a, ca), (b, cb) in zip(together, alone):
        assert torch.equal(ca, cb) and torch.equal(a.scales, b.scales) and torch.equal(a.codebook, b.codebook)
    # GPT-2 Conv1D stores [in, out] with blocks along axis 0: the same coding, transposed
    pt = CodecParams(bits=5, block_size=32, block_axis=0)
    enc_t, codes_t = gptq_quantize(w.t().contiguous(), pt, h)
    enc, codes = gptq_quantize(w, p, h)
    assert torch.equal(codes_t, codes.t()) and torch.equal(enc_t.scales, enc.scales.t())


def test_non_multiple_block_and_dead_columns() -> None:
    w, h = _problem(cols=100)
    h[5, :] = 0
    h[:, 5] = 0
    p = CodecParams(bits=3, block_size=64, block_axis=1)
    enc, codes = gptq_quantize(w, p, h)
    assert enc.scales.shape == (48, 2)
    assert torch.isfinite(reconstruct_encoded(enc, codes).float()).all()


def test_skeleton_has_meta_parameters_and_real_buffers(tmp_path: Path) -> None:
    import transformers

    model_dir = make_tiny_model("llama", tmp_path / "m")
    config = load_config(model_dir / "config.json")
    skeleton = build_calibration_skeleton(config)
    assert all(p.device.type == "meta" for p in skeleton.parameters())
    real = transformers.AutoModelForCausalLM.from_pretrained(str(model_dir))
    assert torch.equal(skeleton.model.rotary_emb.inv_freq, real.model.rotary_emb.inv_freq)
    prefix, blocks = find_blocks(skeleton)
    assert prefix == "model.layers" and len(blocks) == 2


def test_find_blocks_on_other_layouts(tmp_path: Path) -> None:
    for arch, expected in [("gpt2", "transformer.h"), ("mamba", "backbone.layers"), ("jamba", "model.layers")]:
        config = load_config(make_tiny_model(arch, tmp_path / arch) / "config.json")
        assert find_blocks(build_calibration_skeleton(config))[0] == expected


def test_one_sweep_takes_each_maps_own_width_and_block_size() -> None:
    """--target-bpw gives maps of one group different (bits, block size): one sweep codes them as separate sweeps would."""
    w, h = _problem()
    p32, p64 = CodecParams(bits=3, block_size=32, block_axis=1), CodecParams(bits=6, block_size=64, block_axis=1)
    together = gptq_quantize_group([w[:16], w[16:]], [p32, p64], h)
    alone = [gptq_quantize(w[:16], p32, h), gptq_quantize(w[16:], p64, h)]
    for (a, ca), (b, cb), p in zip(together, alone, (p32, p64)):
        assert a.params == p and a.scales.shape[1] == -(-w.shape[1] // p.block_size)
        assert torch.equal(ca, cb) and torch.equal(a.scales, b.scales) and torch.equal(a.codebook, b.codebook)


def test_hessian_error_in_float32_agrees_with_float64() -> None:
    """The coder's candidate comparisons use its float32 Hessian: the same error as float64 to far below a decision."""
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(2048, 192, generator=generator) * torch.logspace(-2, 1, 192)
    h = x.t() @ x / 2048
    w = torch.randn(64, 192, generator=generator)
    q = w + 0.01 * torch.randn(64, 192, generator=generator)
    exact = hessian_error(w, q, h.double())
    fast = hessian_error(w, q, h)
    assert abs(fast - exact) <= 1e-6 * exact
    assert hessian_error(w, q, h) == fast  # repeatable


def test_inverse_cholesky_is_the_upper_factor_of_the_inverse() -> None:
    from uc_attest._internal.compress.gptq import _inverse_cholesky

    generator = torch.Generator().manual_seed(4)
    x = torch.randn(1024, 96, generator=generator) * torch.logspace(-2, 1, 96)
    h = x.t() @ x / 1024
    h += 0.01 * h.diagonal().mean() * torch.eye(96)
    u = _inverse_cholesky(h)
    assert torch.equal(u, u.triu()) and bool((u.diagonal() > 0).all())
    want = torch.linalg.cholesky(torch.linalg.inv(h.double()), upper=True)
    assert float((u.double() - want).abs().max() / want.abs().max()) < 1e-5
    singular = torch.zeros(8, 8)
    singular[0, 0] = 1.0
    damped = _inverse_cholesky(singular)  # damping is added until the factorisation succeeds
    assert bool(torch.isfinite(damped).all())
