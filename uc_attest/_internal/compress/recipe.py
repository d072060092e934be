"""The rebuild recipe a pack records, and the pinned thread count a compression runs with.

Why: the same source, options and software on the same machine class must give
the same pack bytes (supply-chain auditors rebuild what they are handed). Every
random choice of the coder is seeded; what remains machine-dependent is the
kernels' float reductions, which torch splits by intra-op thread. So the
thread count is resolved once, pinned for the whole compression and recorded,
together with the software versions and the machine class, in the manifest's
:class:`~uc_attest._internal.pack.manifest.RebuildRecipe`.
"""

from __future__ import annotations

import contextlib
import platform
import sys
from collections.abc import Iterator
from importlib import metadata

import torch

from ..version import __version__
from ..pack.manifest import RebuildRecipe
from .options import CompressOptions

RECORDED_PACKAGES = ("torch", "transformers", "numpy", "safetensors")


def software_versions() -> dict[str, str]:
    """The versions a rebuild must match: uc_attest, Python and the packages whose kernels or loaders touch the numbers."""
    out = {"uc_attest": __version__, "python": platform.python_version()}
    for name in RECORDED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def machine_class(device: str) -> dict[str, str]:
    """The machine class: OS, CPU architecture, native bf16 on the CPU (and whether by AMX tiles), the CUDA device's name where one is used.

    AMX is named apart because oneDNN multiplies bf16 with AMX tiles where the
    CPU has them and with AVX512-BF16 dot products otherwise, summing in
    another order: the block forwards and the Gram matrices (hessian.gram) of a
    bf16 calibration may then differ in their last bits between the two.
    """
    avx512_bf16, amx = (bool(getattr(torch.cpu, probe, lambda: False)()) for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))
    out = {"system": platform.system(), "architecture": platform.machine(), "cpu_bf16_native": str(avx512_bf16 or amx).lower(),
           "cpu_amx": str(amx).lower(), "byteorder": sys.byteorder, "device": device}  # fmt: skip
    if device.startswith("cuda") and torch.cuda.is_available():
        out["device_name"] = torch.cuda.get_device_name(torch.device(device))
        out["cuda"] = str(torch.version.cuda)
    return out


def with_threads(options: CompressOptions) -> CompressOptions:
    """The options with ``threads`` resolved (torch's current count where not given)."""
    return options if options.threads is not None else options.model_copy(update={"threads": torch.get_num_threads()})


@contextlib.contextmanager
def pinned_threads(count: int) -> Iterator[None]:
    """torch's intra-op thread count set to ``count`` for the duration, restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def rebuild_recipe(options: CompressOptions) -> RebuildRecipe:
    """The recipe of a compression run with ``options`` (threads resolved), as given before any allocation."""
    assert options.threads is not None
    given = options.model_dump(mode="json", exclude={"resume"})
    return RebuildRecipe(options=given, software=software_versions(), machine=machine_class(options.device), threads=options.threads)
