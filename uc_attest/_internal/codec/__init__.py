"""The codec: bit-packing, codebooks, per-block scales, canonical reconstruction, digests.

Pure arithmetic on arrays. It knows nothing of files, manifests or signatures.
The package imports only its numpy parts eagerly (``uc verify`` must not pay for
importing torch); the torch adapters and the codebook learner load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from .bitpack import pack_codes, packed_nbytes, unpack_codes
from .canonical import digest_of_bytes, num_blocks, reconstruct_array
from .params import RECONSTRUCTION_DTYPES, SCALE_DTYPE, CodecParams

_LAZY = {
    "learn_codebook": ".codebook",
    "assign_codes": ".codebook",
    "tensor_digest": ".reconstruct",
    "EncodedTensor": ".encoded",
}

__all__ = [
    "CodecParams",
    "RECONSTRUCTION_DTYPES",
    "SCALE_DTYPE",
    "digest_of_bytes",
    "num_blocks",
    "pack_codes",
    "packed_nbytes",
    "reconstruct_array",
    "unpack_codes",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    """The torch-backed names, imported when first asked for."""
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
