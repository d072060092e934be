"""The compiled GPTQ column loop (compress/_sweep.c) gives the torch loop's codes and errors, bit for bit."""

from __future__ import annotations

import pytest
import torch

from uc_attest._internal.compress import gptq
from uc_attest._internal.compress.gptq import _sweep, native_sweep_applies, prepare_hessian

pytestmark = pytest.mark.skipif(gptq._native_sweep is None, reason="built without a C compiler: only the torch loop exists")


def _case(rows: int, cols: int, seed: int) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor], gptq.PreparedHessian]:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(rows, cols, generator=g)
    x = torch.randn(3 * cols, cols, generator=g) * torch.rand(cols, generator=g) * 3
    prepared = prepare_hessian(x.t() @ x / x.shape[0], cols, 0.025, True)
    half = rows // 2
    codebooks = [torch.sort(torch.randn(32, generator=g))[0], torch.sort(torch.randn(8, generator=g))[0]]  # two widths
    scales = (w.abs().amax(1, keepdim=True) / 2).expand(rows, cols).contiguous()
    scales[0, : cols // 3] = 0.0  # a zero scale: its inverse is 0
    return [w[:half], w[half:]], codebooks, [scales[:half], scales[half:]], prepared


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(("rows", "cols"), [(6, 5), (40, 130), (97, 300)])
def test_native_and_torch_loops_agree_bit_for_bit(monkeypatch: pytest.MonkeyPatch, dtype: torch.dtype, rows: int, cols: int) -> None:
    mats, codebooks, scales, prepared = _case(rows, cols, rows * cols)
    assert prepared.hinv is not None
    assert native_sweep_applies(mats[0], prepared.hinv, dtype)
    native_codes, native_loss = _sweep(mats, codebooks, scales, prepared.hinv, prepared.perm, dtype)
    monkeypatch.setenv("UC_ATTEST_NATIVE", "0")
    assert not native_sweep_applies(mats[0], prepared.hinv, dtype)
    torch_codes, torch_loss = _sweep(mats, codebooks, scales, prepared.hinv, prepared.perm, dtype)
    for a, b in zip(native_codes, torch_codes, strict=True):
        assert torch.equal(a, b)
    assert native_loss == torch_loss
    assert int(native_codes[1].max()) < 8  # the shorter codebook's rows never index past it


def test_the_kernel_refuses_buffers_that_do_not_fit() -> None:
    assert gptq._native_sweep is not None
    w = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="do not fit"):
        gptq._native_sweep.sweep_block(w.numpy(), w.numpy(), w.numpy(), torch.zeros(3, 3).numpy(), torch.zeros(3, 4).numpy(),
                                       torch.zeros(2, 2).numpy(), torch.zeros(2, 3, dtype=torch.int64).numpy(), w.numpy(),
                                       3, 2, 5, False)  # fmt: skip
