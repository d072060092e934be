"""Where the attestation files go by default, shared by the vendor's sign and the customer's check.

* bundle: ``<PACK>.sigstore.json`` beside the pack directory (Sigstore's
  ``<artifact>.sigstore.json`` convention);
* evaluation tokens: beside the bundle, the bundle's name with
  ``.sigstore.json`` (or ``.json``) replaced by ``.eval-tokens.safetensors``;
* OpenSSF model signature (``attest sign --oms``): beside the bundle, the same
  stem with ``.model.sig`` (docs/ATTESTATION.md).

So the bundle and its token file travel together, also when ``-o`` puts the
bundle elsewhere; the token file is found by name but trusted only by the
SHA-256 that the signed statement gives for subject ``eval-tokens.safetensors``.
"""

from __future__ import annotations

import os
from pathlib import Path

BUNDLE_SUFFIX = ".sigstore.json"
TOKENS_SUFFIX = ".eval-tokens.safetensors"
OMS_SUFFIX = ".model.sig"


def _pack_base(pack: str | os.PathLike[str]) -> Path:
    p = Path(os.path.normpath(os.fspath(pack)))
    if p.name in ("", ".", ".."):
        p = p.resolve()
    return p


def default_bundle_path(pack: str | os.PathLike[str]) -> Path:
    """``<PACK>.sigstore.json`` next to the pack directory."""
    base = _pack_base(pack)
    return base.with_name(base.name + BUNDLE_SUFFIX)


def _beside_bundle(bundle: str | os.PathLike[str], suffix: str) -> Path:
    b = Path(bundle)
    name = b.name
    for known in (BUNDLE_SUFFIX, ".json"):
        if name.endswith(known) and len(name) > len(known):
            name = name[: -len(known)]
            break
    return b.with_name(name + suffix)


def tokens_path_for_bundle(bundle: str | os.PathLike[str]) -> Path:
    """The evaluation token file that accompanies ``bundle``."""
    return _beside_bundle(bundle, TOKENS_SUFFIX)


def oms_path_for_bundle(bundle: str | os.PathLike[str]) -> Path:
    """The OpenSSF model-signing signature of the pack that accompanies ``bundle``."""
    return _beside_bundle(bundle, OMS_SUFFIX)
