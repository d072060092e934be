"""Edits a pack the way someone who owns its files can: rewrite a file and keep the manifest consistent with it.

Tests use this to show which defences rest on the signature alone: after a
reseal the manifest's hashes match again, so only a signed digest (or a check
beyond hashes) can notice.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from uc_attest._internal.pack.strict_json import dumps_canonical


def read_manifest(pack: Path) -> dict[str, Any]:
    return json.loads((pack / "ucpack.json").read_bytes())


def reseal(pack: Path, rel: str, data: bytes) -> None:
    """Write ``data`` as pack file ``rel`` and update the manifest's size and SHA-256 for it."""
    (pack / rel).write_bytes(data)
    manifest = read_manifest(pack)
    for entry in manifest["files"]:
        if entry["path"] == rel:
            entry["size"], entry["sha256"] = len(data), hashlib.sha256(data).hexdigest()
    (pack / "ucpack.json").write_bytes(dumps_canonical(manifest))


def copy_with_a_flipped_shard_byte(pack: Path, dest: Path) -> Path:
    """Copy ``pack`` to ``dest`` and flip one bit near the end of its first shard (the manifest left as it was); return that shard."""
    import shutil

    shutil.copytree(pack, dest)
    shard = next(p for p in sorted(dest.iterdir()) if p.suffix == ".safetensors")
    data = bytearray(shard.read_bytes())
    data[-3] ^= 0x01
    shard.write_bytes(bytes(data))
    return shard
