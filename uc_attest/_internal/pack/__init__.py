"""The pack: on-disk format, atomic writer, strict reader and verifier.

The pack knows the codec and files; it knows nothing of signatures.
"""

from .manifest import FORMAT_NAME, FORMAT_VERSION, MANIFEST_NAME, PackManifest

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "MANIFEST_NAME", "PackManifest"]
