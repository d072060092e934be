"""The incoherence transform in torch: the canonical inverse (bit-identical to incoherence.py) and the encoder's side.

``inverse_transform`` is the reconstruction's steps 1-4 (see incoherence.py)
as torch operations on float32, out-of-place, on any device. The tests hold it
bit-identical to the numpy definition and to the golden vectors.

``forward_transform`` and ``transform_hessian`` are the encoder's side, and
``tuning_inverse`` is block tuning's differentiable stand-in for the inverse;
all three are free to use any precision. The coder codes ``v = forward(w)``
under the Hessian ``M H M^T`` of the transformed inputs, where ``w = v M`` is
the inverse.
"""

from __future__ import annotations

import torch

from .incoherence import check_transform, inverse_scale_exponent, log2_size, signs
from .params import CodecParams, HadamardTransform


def _butterfly(x: torch.Tensor, size: int) -> torch.Tensor:
    """The unnormalised Sylvester Hadamard along the last axis, runs of ``size``, stages h = 1, 2, ... in order."""
    shape = x.shape
    runs = x.reshape(-1, size)
    h = 1
    while h < size:
        pairs = runs.reshape(runs.shape[0], size // (2 * h), 2, h)
        low, high = pairs[:, :, 0, :], pairs[:, :, 1, :]
        runs = torch.stack((low + high, low - high), dim=2).reshape(-1, size)
        h *= 2
    return runs.reshape(shape)


def _hadamard_matrix(size: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The Sylvester Hadamard matrix of order ``size`` (a power of two), entries +-1."""
    h = torch.ones(1, 1, dtype=dtype, device=device)
    while h.shape[0] < size:
        h = torch.cat((torch.cat((h, h), 1), torch.cat((h, -h), 1)), 0)
    return h


def _hadamard_encoder(x: torch.Tensor, size: int) -> torch.Tensor:
    """The same transform as ``_butterfly``, as two small matrix products: the encoder's side only.

    H_size = H_a kron H_b with a*b = size, so each run of ``size`` is a [a, b]
    matrix multiplied by H_b on the right and H_a on the left. In float64 it
    agrees with the butterfly to about 1e-14 and is 4-7x faster on the CPU
    (widths 576 and 1536), which mattered because the Hessian of every rotated
    map is transformed on both sides. Never used for the canonical inverse,
    whose float32 additions must happen in the documented butterfly order.
    """
    shape = x.shape
    low = 1 << (size.bit_length() - 1) // 2
    high = size // low
    runs = x.reshape(-1, low, high) @ _hadamard_matrix(high, x.dtype, x.device)
    runs = torch.matmul(_hadamard_matrix(low, x.dtype, x.device), runs)
    return runs.reshape(shape)


def sign_tensor(transform: HadamardTransform, width: int, device: torch.device | str = "cpu",
                dtype: torch.dtype = torch.float32) -> torch.Tensor:  # fmt: skip
    return torch.from_numpy(signs(transform.seed, width)).to(device=device, dtype=dtype)


def _transform_axis_last(values: torch.Tensor, params: CodecParams) -> tuple[torch.Tensor, HadamardTransform]:
    """float32 ``values`` with the block axis moved last, and the transform, checked against that axis's width."""
    transform = params.transform
    assert transform is not None
    check_transform(transform, values.shape[params.block_axis])
    return values.to(torch.float32).movedim(params.block_axis, -1), transform


def inverse_transform(values: torch.Tensor, params: CodecParams) -> torch.Tensor:
    """The canonical steps 1-4 on float32 products along ``params.block_axis`` (float32 out, same device)."""
    x, transform = _transform_axis_last(values, params)
    axis, width = params.block_axis, x.shape[-1]
    if x.numel() == 0:
        return x.movedim(-1, axis)
    x = _butterfly(x.contiguous(), transform.size)
    x = x * torch.tensor(2.0 ** -inverse_scale_exponent(transform.size), dtype=torch.float32, device=x.device)
    x = x * sign_tensor(transform, width, x.device)
    x = torch.where(torch.isnan(x), torch.tensor(float("nan"), dtype=torch.float32, device=x.device).abs(), x)
    return x.movedim(-1, axis)


def tuning_inverse(values: torch.Tensor, params: CodecParams) -> torch.Tensor:
    """The inverse transform as two matrix products, differentiable: for block tuning's steps only, never canonical.

    Block tuning differentiates the reconstruction at every step; the
    butterfly's eight stages of stacks and sums (and their backward) were a
    sixth of its time. This agrees with ``inverse_transform`` up to float32
    rounding, which is all a gradient step needs; what tuning keeps is judged
    and shipped with the canonical reconstruction.
    """
    x, transform = _transform_axis_last(values, params)
    axis, width = params.block_axis, x.shape[-1]
    x = _hadamard_encoder(x.contiguous(), transform.size) * 2.0 ** -inverse_scale_exponent(transform.size)
    return (x * sign_tensor(transform, width, x.device)).movedim(-1, axis)


def forward_transform(weight: torch.Tensor, transform: HadamardTransform, axis: int) -> torch.Tensor:
    """The values the coder codes (float64 arithmetic, float32 out): 2**-floor(m/2) * H_b (signs * w) along ``axis``.

    Its exact inverse is ``inverse_transform`` up to float32 rounding.
    """
    x = weight.to(torch.float64).movedim(axis, -1)
    check_transform(transform, x.shape[-1])
    x = x * sign_tensor(transform, x.shape[-1], x.device, torch.float64)
    x = _hadamard_encoder(x.contiguous(), transform.size) * 2.0 ** -(log2_size(transform.size) // 2)
    return x.to(torch.float32).movedim(-1, axis)


def transform_hessian(hessian: torch.Tensor, transform: HadamardTransform) -> torch.Tensor:
    """``M H M^T`` (float64) for the inverse map ``w = v M``, M = 2**-ceil(m/2) H_b D: the Hessian of the coded values."""
    width = hessian.shape[0]
    check_transform(transform, width)
    d = sign_tensor(transform, width, hessian.device, torch.float64)
    h = hessian.to(torch.float64) * d[:, None] * d[None, :]
    h = _hadamard_encoder(_hadamard_encoder(h.contiguous(), transform.size).t().contiguous(), transform.size).t()
    return h * 4.0 ** -inverse_scale_exponent(transform.size)
