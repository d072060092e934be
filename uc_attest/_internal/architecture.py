"""What each tensor of a Hugging Face checkpoint is, decided from the model's own modules.

A tensor is quantized because it is a linear map (``nn.Linear``, GPT-2's
``Conv1D``, or a mixture-of-experts matrix used as one), never because of its
number of dimensions: a Mamba ``A_log`` or a ``conv1d`` kernel stays as it is.

Checkpoint keys are not always parameter names (transformers renames and fuses
MoE experts on load), so keys are mapped through transformers' own conversion
rules to the parameter they feed, and that parameter's module decides.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

ROLE_LINEAR = "linear"
ROLE_CONV1D = "conv1d"
ROLE_EXPERTS = "experts"
ROLE_EMBEDDING = "embedding"
ROLE_HEAD = "output_head"
ROLE_ROUTER = "router"
ROLE_NORM = "norm"
ROLE_OTHER = "other"

QUANTIZED_ROLES = frozenset({ROLE_LINEAR, ROLE_CONV1D, ROLE_EXPERTS})


@dataclass(frozen=True)
class TensorRole:
    role: str
    block_axis: int | None  # input dimension of a linear map, None for passthrough

    @property
    def quantize(self) -> bool:
        return self.role in QUANTIZED_ROLES

MAX_CONFIG_BYTES = 16 << 20  # a config.json is kilobytes


def load_config(config_path: Path) -> Any:
    """The config of a model directory the user named; anything unusable is one exit-2 error line."""
    from .errors import UnreadableInputError, UsageError
    from .safe_io import read_regular_file

    try:
        raw = bytes(read_regular_file(config_path, MAX_CONFIG_BYTES, follow_symlinks=True))
    except FileNotFoundError:
        raise UsageError(f"no config.json: {config_path}") from None
    except OSError as exc:
        raise UnreadableInputError(f"cannot read {config_path}: {exc.strerror or exc}") from None
    try:
        return config_from_bytes(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise UnreadableInputError(f"{config_path}: {exc}") from None


def config_from_bytes(raw: bytes) -> Any:
    """A transformers config from config.json's bytes (so a caller can hash exactly what it parses)."""
    from transformers import AutoConfig

    try:
        data = json.loads(raw.decode("utf-8"))
    except RecursionError:
        raise ValueError("config.json is nested too deeply") from None
    if not isinstance(data, dict):
        raise ValueError("config.json is not a JSON object")
    model_type = data.get("model_type")
    if not isinstance(model_type, str):
        raise ValueError("config.json has no model_type")
    config = AutoConfig.for_model(model_type)
    try:
        return config.__class__.from_dict(data)
    except Exception as exc:  # noqa: BLE001 - transformers' config classes raise many types on odd values
        raise ValueError(f"config.json is not a valid {model_type} config ({type(exc).__name__}: {exc})") from None


def causal_lm_class(config: Any) -> Any:
    """The transformers class a causal LM config builds (AutoModelForCausalLM's choice)."""
    from transformers import AutoModel, AutoModelForCausalLM

    for auto in (AutoModelForCausalLM, AutoModel):
        try:
            return auto._model_mapping[type(config)]
        except KeyError:
            continue
    raise ValueError(f"transformers has no model class for model_type {config.model_type!r}")


def build_skeleton(config: Any) -> nn.Module:
    """The model with every parameter on the meta device: structure, no memory."""
    cls = causal_lm_class(config)
    with torch.device("meta"):
        return cls._from_config(config)


class CheckpointKeyMapper:
    """Maps checkpoint keys to the parameter names of the model that loads them."""

    def __init__(self, model: nn.Module) -> None:
        from transformers.conversion_mapping import get_model_conversion_mapping
        from transformers.core_model_loading import WeightConverter, rename_source_key

        transforms = get_model_conversion_mapping(model)
        self._renamings = [t for t in transforms if not isinstance(t, WeightConverter)]
        self._converters = [t for t in transforms if isinstance(t, WeightConverter)]
        self._rename = rename_source_key
        self._prefix = getattr(model, "base_model_prefix", None)
        self._meta = dict(model.state_dict())

    def target(self, key: str) -> str:
        renamed, _ = self._rename(key, self._renamings, self._converters, self._prefix, self._meta)
        return renamed


def _module_and_attr(model: nn.Module, param_name: str) -> tuple[nn.Module | None, str]:
    module_name, _, attr = param_name.rpartition(".")
    try:
        return (model.get_submodule(module_name) if module_name else model), attr
    except AttributeError:
        return None, attr


def classify(model: nn.Module, mapper: CheckpointKeyMapper, key: str, ndim: int) -> TensorRole:
    """Role and block axis of one checkpoint tensor."""
    from transformers.pytorch_utils import Conv1D

    target = mapper.target(key)
    module, attr = _module_and_attr(model, target)
    if module is None:
        return TensorRole(ROLE_OTHER, None)
    output_embeddings = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if module is output_embeddings:
        return TensorRole(ROLE_HEAD, None)
    if isinstance(module, nn.Embedding):
        return TensorRole(ROLE_EMBEDDING, None)
    if isinstance(module, nn.Linear) and attr == "weight" and ndim == 2:
        return TensorRole(ROLE_LINEAR, 1)
    if isinstance(module, Conv1D) and attr == "weight" and ndim == 2:
        return TensorRole(ROLE_CONV1D, 0)
    name = type(module).__name__
    param = getattr(module, attr, None)
    if "Experts" in name and isinstance(param, torch.Tensor) and param.ndim == 3 and ndim in (2, 3):
        transposed = bool(getattr(module, "is_transposed", False))
        return TensorRole(ROLE_EXPERTS, ndim - 2 if transposed else ndim - 1)
    if "Router" in name or "router" in target or "Gate" in name:
        return TensorRole(ROLE_ROUTER, None)
    if "Norm" in name or "norm" in attr:
        return TensorRole(ROLE_NORM, None)
    return TensorRole(ROLE_OTHER, None)


def expected_checkpoint_keys(model: nn.Module) -> set[str]:
    """Parameter and persistent buffer names of the model (tied duplicates once)."""
    names = {n for n, _ in model.named_parameters(remove_duplicate=True)}
    for module_name, module in model.named_modules():
        for buf_name in getattr(module, "_buffers", {}):
            if buf_name not in getattr(module, "_non_persistent_buffers_set", set()):
                names.add(f"{module_name}.{buf_name}" if module_name else buf_name)
    return names
