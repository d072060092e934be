"""Where the attestation files go by default, shared by the vendor's sign and the customer's check.

* bundle: ``<PACK>.sigstore.json`` beside the pack directory (Sigstore's
  ``<artifact>.sigstore.json`` convention);
* evaluation tokens: beside the bundle, the bundle's name with
  ``.sigstore.json`` (or ``.json``) replaced by ``.eval-tokens.safetensors``.

So the bundle and its token file travel together, also when ``-o`` puts the
bundle elsewhere; the token file is found by name but trusted only by the
SHA-256 that the signed statement gives for subject ``eval-tokens.safetensors``.
"""

from __future__ import annotations

import os
from pathlib import Path

BUNDLE_SUFFIX = ".sigstore.json"
TOKENS_SUFFIX = ".eval-tokens.safetensors"


def _pack_base(pack: str | os.PathLike[str]) -> Path:
    p = Path(os.path.normpath(os.fspath(pack)))
    if p.name in ("", ".", ".."):
        p = p.resolve()
    return p


def default_bundle_path(pack: str | os.PathLike[str]) -> Path:
    """``<PACK>.sigstore.json`` next to the pack directory."""
    base = _pack_base(pack)
    return base.with_name(base.name + BUNDLE_SUFFIX)


def tokens_path_for_bundle(bundle: str | os.PathLike[str]) -> Path:
    """The evaluation token file that accompanies ``bundle``."""
    b = Path(bundle)
    name = b.name
    for suffix in (BUNDLE_SUFFIX, ".json"):
        if name.endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
            break
    return b.with_name(name + TOKENS_SUFFIX)
