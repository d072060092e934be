"""The codec: bit-packing, codebooks, per-block scales, canonical reconstruction, digests.

Pure arithmetic on arrays. It knows nothing of files, manifests or signatures.
"""

from .bitpack import pack_codes, packed_nbytes, unpack_codes
from .codebook import learn_codebook, assign_codes
from .params import CodecParams, RECONSTRUCTION_DTYPES, SCALE_DTYPE
from .reconstruct import reconstruct, tensor_digest, digest_of_bytes, num_blocks

__all__ = [
    "CodecParams",
    "RECONSTRUCTION_DTYPES",
    "SCALE_DTYPE",
    "assign_codes",
    "digest_of_bytes",
    "learn_codebook",
    "num_blocks",
    "pack_codes",
    "packed_nbytes",
    "reconstruct",
    "tensor_digest",
    "unpack_codes",
]

from .encoded import EncodedTensor  # noqa: E402

__all__ += ["EncodedTensor"]
