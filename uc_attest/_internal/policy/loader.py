"""Read a policy file into a validated :class:`Policy` plus the digest of its bytes.

The digest is over the exact bytes read, not over a re-serialisation: that is
what a customer can reproduce with ``sha256sum policy.toml`` and what the
report embeds, so an auditor can tell which rules a verdict was made under.
"""

from __future__ import annotations

import hashlib
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from ..errors import UnreadableInputError, UsageError, more_than_shown
from ..safe_io import read_input_file
from .model import Policy
from .resources import DEFAULT_POLICY_NAME, shipped_policy_names, shipped_policy_path

MAX_POLICY_BYTES = 1 << 20


@dataclass(frozen=True)
class LoadedPolicy:
    """A validated policy together with where it came from and its SHA-256."""

    policy: Policy
    source: str
    sha256: str
    data: bytes

    @property
    def text(self) -> str:
        return self.data.decode("utf-8")


def resolve_policy_path(spec: str | os.PathLike[str] | None) -> Path:
    """Turn ``--policy`` into a file path.

    ``None`` means the shipped default policy; a bare name without a path
    separator or suffix (``strict``) means that shipped policy; anything else
    is a path to the customer's own file.
    """
    if spec is None:
        return shipped_policy_path(DEFAULT_POLICY_NAME)
    text = os.fspath(spec)
    if text and os.sep not in text and "/" not in text and not text.endswith(".toml"):
        if text in shipped_policy_names():
            return shipped_policy_path(text)
        known = ", ".join(shipped_policy_names())
        raise UsageError(f"unknown policy name {text!r} (shipped: {known}; or give a path to a .toml file)")
    return Path(text)


def _describe(error: dict[str, object]) -> str:
    parts = error.get("loc", ())
    loc = ".".join(str(part) for part in (parts if isinstance(parts, (tuple, list)) else ()) if part != "__root__")
    kind = error.get("type")
    if kind == "extra_forbidden":
        return f"unknown key '{loc}'"
    if kind == "missing":
        return f"missing key '{loc}'"
    message = str(error.get("msg", "invalid value"))
    message = message.removeprefix("Value error, ")
    return f"{loc}: {message}" if loc else message


def parse_policy(data: bytes, source: str) -> LoadedPolicy:
    """Validate policy ``data``; every problem becomes one UsageError line."""
    try:
        raw = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise UnreadableInputError(f"policy {source}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise UnreadableInputError(f"policy {source}: not valid TOML: {exc}") from None
    except RecursionError:  # tomllib recurses once per nested array or inline table
        raise UnreadableInputError(f"policy {source}: nested too deeply for a policy file") from None
    try:
        policy = Policy.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(_describe(e) for e in exc.errors()[:5])  # type: ignore[arg-type]
        raise UsageError(f"policy {source}: {problems}{more_than_shown(exc.error_count(), 5)}") from None
    return LoadedPolicy(policy=policy, source=source, sha256=hashlib.sha256(data).hexdigest(), data=data)


def load_policy(spec: str | os.PathLike[str] | None = None) -> LoadedPolicy:
    """Load and validate a policy given as a path, a shipped name, or None (default)."""
    path = resolve_policy_path(spec)
    data = read_input_file(path, "policy file", MAX_POLICY_BYTES)
    shipped = path.resolve().parent == shipped_policy_path(DEFAULT_POLICY_NAME).resolve().parent
    source = f"{path.name} (shipped with uc_attest)" if shipped else str(path)
    return parse_policy(data, source)
