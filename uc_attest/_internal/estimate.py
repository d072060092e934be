"""Expected peak memory of ``uc compress`` and ``attest sign``/``check``, from a model's config.

The formulas are those of docs/SCALE.md ("Memory"), with the fixed costs
measured on this project's machine (bench/scale_1b.py, a 1.1B-parameter
model of TinyLlama's shape, and the demo model). They are printed as the
first line of the long commands so that a user learns before the work starts
whether it fits; they are estimates, not limits, and nothing is decided by
them. Only dense decoder models with the usual config keys are estimated;
for anything else the commands say nothing rather than guess.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GIB = float(1 << 30)
RUNTIME_BYTES = 0.6 * GIB  # interpreter, torch, transformers and the tokenizer, resident before any weight (measured)
WRITER_CHUNK_BYTES = 32 << 20  # the streaming writer's copy buffers and the source reader's pages
DEFAULT_WINDOWS = 40  # windows of the built-in evaluation text at 512 tokens


@dataclass(frozen=True)
class ModelShape:
    """The few numbers of a dense decoder's config that its memory depends on."""

    layers: int
    hidden: int
    intermediate: int
    vocab: int
    heads: int
    kv_heads: int
    head_dim: int
    tied: bool

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ModelShape | None:
        """The shape, or None when the config is not a dense decoder's with the usual keys (nothing is estimated)."""
        try:
            hidden, heads = int(config["hidden_size"]), int(config["num_attention_heads"])
            return cls(layers=int(config["num_hidden_layers"]), hidden=hidden, intermediate=int(config["intermediate_size"]),
                       vocab=int(config["vocab_size"]), heads=heads, kv_heads=int(config.get("num_key_value_heads") or heads),
                       head_dim=int(config.get("head_dim") or hidden // heads), tied=bool(config.get("tie_word_embeddings", False)))  # fmt: skip
        except (KeyError, TypeError, ValueError, ZeroDivisionError):
            return None

    @property
    def block_params(self) -> int:
        attention = self.hidden * self.head_dim * (2 * self.heads + 2 * self.kv_heads)  # q, o; k, v
        return attention + 3 * self.hidden * self.intermediate + 2 * self.hidden

    @property
    def outside_params(self) -> int:
        """Embeddings, final norm and (when untied) the head."""
        return self.vocab * self.hidden * (1 if self.tied else 2) + self.hidden

    @property
    def params(self) -> int:
        return self.layers * self.block_params + self.outside_params


def load_shape(config_path: Path) -> ModelShape | None:
    """The shape from a config.json, or None when it is unreadable or not estimable."""
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return ModelShape.from_config(config) if isinstance(config, dict) else None


def evaluation_peak_bytes(shape: ModelShape, windows: int | None, seq_len: int, streaming: bool = True) -> float:
    """``attest sign``/``check``: streaming, the outside parts and one block in float32, hidden states, one window's logits;
    ``--no-streaming``, the whole model in float32 plus its bf16 state dict while it is built."""
    count = windows or DEFAULT_WINDOWS
    if not streaming:
        return RUNTIME_BYTES + 1.5 * 4 * shape.params + seq_len * shape.vocab * 4
    outside = 4 * shape.outside_params
    block = 1.5 * 4 * shape.block_params  # float32, plus its bf16 reconstruction while it loads
    states = count * seq_len * shape.hidden * 4
    logits = seq_len * shape.vocab * 4
    return RUNTIME_BYTES + outside + block + states + logits


def compress_peak_bytes(shape: ModelShape, method: str, samples: int, seq_len: int) -> float:
    """``uc compress``: data-free codes one tensor at a time; calibrated holds one block, activations and Hessians."""
    if method == "datafree":
        # the pack writer spools each open shard to disk as tensors arrive (pack/safetensors_stream.py) and copies it
        # into place in bounded chunks, so no shard is held: what is resident is the coded tensor in float32, its
        # codes and the learner's scratch (about 12 bytes per weight of the largest map, measured), and the chunks
        return RUNTIME_BYTES + 12 * shape.hidden * shape.intermediate + WRITER_CHUNK_BYTES
    block = 4 * 4 * shape.block_params  # float32: the block, its coded copy, GPTQ's working weights and errors
    # inputs, targets, replayed outputs, and the previous block's outputs on their way to the work directory
    activations = 4 * samples * seq_len * shape.hidden * 4
    # one per input (q/k/v, gate/up share), x5: the Hessian, its inverse and Cholesky factor, and under the default
    # --incoherence auto the rotated Hessian and its factor beside them
    hessians = 5 * 4 * (3 * shape.hidden**2 + shape.intermediate**2)
    embeddings = 4 * shape.vocab * shape.hidden
    return RUNTIME_BYTES + WRITER_CHUNK_BYTES + block + activations + hessians + embeddings


def describe(peak: float, shape: ModelShape, what: str) -> str:
    """The one line the commands print first."""
    return (f"expected peak memory of {what}: about {peak / GIB:.1f} GiB for this model "
            f"({shape.params / 1e9:.2f} B parameters, {shape.layers} blocks; formula in docs/SCALE.md)")  # fmt: skip


__all__ = ["ModelShape", "load_shape", "evaluation_peak_bytes", "compress_peak_bytes", "describe"]
