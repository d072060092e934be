"""Does the manifest's tensor set fit the model its config describes?

A pack whose files all hash correctly can still be wrong if the manifest itself
was built wrong or edited and re-hashed: a tensor missing, an extra one, a
renamed one or a shape that does not fit the architecture. This check builds the
model skeleton on the meta device (no memory) and compares.
"""

from __future__ import annotations

from ..architecture import CheckpointKeyMapper, build_skeleton, config_from_bytes, expected_checkpoint_keys
from .manifest import PackManifest


def config_problems(config_bytes: bytes, manifest: PackManifest) -> list[str]:
    """Problems of the manifest's tensor set against the config whose (already hashed) bytes are given."""
    try:
        config = config_from_bytes(config_bytes)
    except Exception as exc:  # noqa: BLE001 - any config failure is a finding, not a crash
        return [f"{manifest.model.config_file}: cannot be read as a transformers config ({type(exc).__name__})"]
    if config.model_type != manifest.model.model_type:
        return [f"config model_type {config.model_type!r} differs from the manifest's {manifest.model.model_type!r}"]
    try:
        skeleton = build_skeleton(config)
    except Exception as exc:  # noqa: BLE001
        return [f"the config does not build a model ({type(exc).__name__}: {exc})"]
    mapper = CheckpointKeyMapper(skeleton)
    meta = skeleton.state_dict()
    expected = expected_checkpoint_keys(skeleton)
    problems: list[str] = []
    covered: set[str] = set()
    for tensor in manifest.tensors:
        target = mapper.target(tensor.name)
        if target not in meta:
            problems.append(f"{tensor.name}: not a tensor of a {config.model_type} model with this config")
            continue
        covered.add(target)
        if target == tensor.name and list(meta[target].shape) != tensor.shape:
            problems.append(f"{tensor.name}: shape {tensor.shape} does not fit the config ({list(meta[target].shape)})")
    tied = _tied_names(skeleton)
    for name in sorted(expected - covered - tied):
        problems.append(f"{name}: required by the config but missing from the pack")
    return problems


def _tied_names(model) -> set[str]:  # type: ignore[no-untyped-def]
    """Parameters that are tied to another one (saved once, under the other name)."""
    seen: dict[int, str] = {}
    tied: set[str] = set()
    for name, param in model.named_parameters(remove_duplicate=False):
        if id(param) in seen:
            tied.add(name)
            tied.add(seen[id(param)])
        else:
            seen[id(param)] = name
    return tied
