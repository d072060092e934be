"""The name and the level a policy earns: a shipped name belongs only to the shipped policy file's exact bytes.

Why: a policy file states its own ``name``. A copy of ``development.toml``
with ``name = "strict"`` used to be recorded as policy "strict" in
results.json, the report and ``verify-report``, and earned
``UC_ATTEST_POLICY_STRICT`` in the customer's signed verdict, although none
of the strict rules applied. Now:

* a policy whose bytes are a shipped file (``policies/<name>.toml``) and
  whose name is that file's is recorded under that name and earns
  ``UC_ATTEST_POLICY_<NAME>``;
* any other policy is recorded as ``<name> (custom, sha256 <16 hex>)`` and
  earns ``UC_ATTEST_POLICY_CUSTOM_<16 HEX>``: its own level, tied to its digest.
"""

from __future__ import annotations

import functools
import hashlib
import re

from .resources import shipped_policy_names, shipped_policy_path

LEVEL_PREFIX = "UC_ATTEST_POLICY_"
CUSTOM_LEVEL_PREFIX = LEVEL_PREFIX + "CUSTOM_"
DIGEST_SHOWN = 16


@functools.lru_cache(maxsize=1)
def shipped_policy_digests() -> dict[str, str]:
    """``{shipped name: SHA-256 of its file}``, read once."""
    return {name: hashlib.sha256(shipped_policy_path(name).read_bytes()).hexdigest() for name in shipped_policy_names()}


def is_shipped_policy(name: str, sha256: str) -> bool:
    """Whether a policy named ``name`` with file digest ``sha256`` is the shipped policy of that name, byte for byte."""
    return shipped_policy_digests().get(name) == sha256


def recorded_policy_name(name: str, sha256: str) -> str:
    """The name results, reports and verdicts carry: the shipped name only for the shipped bytes."""
    return name if is_shipped_policy(name, sha256) else f"{name} (custom, sha256 {sha256[:DIGEST_SHOWN]})"


def policy_level(name: str, sha256: str) -> str:
    """The level a PASS earns: ``UC_ATTEST_POLICY_STRICT`` for the shipped strict file, ``..._CUSTOM_<digest>`` otherwise."""
    if is_shipped_policy(name, sha256):
        return LEVEL_PREFIX + (re.sub(r"[^A-Z0-9]+", "_", name.upper()).strip("_") or "UNNAMED")
    return CUSTOM_LEVEL_PREFIX + sha256[:DIGEST_SHOWN].upper()
