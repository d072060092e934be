"""How one perplexity measurement runs: the settings built once (by the CLI) and passed down whole.

``attest sign``, ``attest check``, ``attest probe`` and ``uc eval`` all measure
with the same method (uc-ppl-v1) and differ only in these six values. They
used to travel as six loose parameters through every signature from the CLI to
the streaming evaluator; one frozen object keeps them together, validated once.

Nothing here is written to disk or signed: the attestation predicate records
``seq_len``, ``max_windows`` and the compute dtype in its own fields
(``attest/predicate.py``), whose bytes this object does not touch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal, get_args

from ..errors import UsageError

ComputeDtype = Literal["float32", "bfloat16"]
COMPUTE_DTYPES: tuple[str, ...] = get_args(ComputeDtype)


@dataclass(frozen=True)
class EvalSettings:
    """What a measurement uses: the windows, the arithmetic, where and how it runs, and whether bars show.

    ``device`` is already resolved (``cpu`` or ``cuda:N``, see
    :func:`uc_attest._internal.evaluate.measure.resolve_device`); ``streaming`` runs one
    decoder block at a time (the same NLL per window, bit for bit, as the whole
    model). ``attest check`` measures over the signed windows: it replaces
    ``seq_len`` and ``max_windows`` with :meth:`with_windows`.
    """

    seq_len: int = 512
    max_windows: int | None = None
    compute_dtype: ComputeDtype = "float32"
    streaming: bool = True
    device: str = "cpu"
    progress: bool = True

    def __post_init__(self) -> None:
        if self.seq_len < 2:
            raise UsageError("--seq-len must be at least 2")
        if self.max_windows is not None and self.max_windows < 1:
            raise UsageError("--max-windows must be at least 1")
        if self.compute_dtype not in COMPUTE_DTYPES:
            raise UsageError(f"--compute-dtype must be one of {', '.join(COMPUTE_DTYPES)}, not {self.compute_dtype!r}")

    def with_windows(self, seq_len: int, max_windows: int | None) -> EvalSettings:
        """The same settings over other windows (the check's: the ones the vendor signed)."""
        return dataclasses.replace(self, seq_len=seq_len, max_windows=max_windows)


__all__ = ["COMPUTE_DTYPES", "ComputeDtype", "EvalSettings"]
