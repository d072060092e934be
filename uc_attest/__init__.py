"""uc_attest: compressed LLM packs whose reconstruction is bit-exact, signed and checked air-gapped."""

from __future__ import annotations

from typing import Any

from ._internal.version import __version__


def load_model(pack: Any, **kwargs: Any) -> Any:
    """Load a pack as a transformers model whose weights are the canonical reconstruction."""
    from ._internal.evaluate.loading import load_pack_model

    return load_pack_model(pack, **kwargs)


__all__ = ["__version__", "load_model"]
