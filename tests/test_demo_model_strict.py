"""demo_model loads the GGUF state dict strictly: a missing or unexpected tensor is refused, only a tied head may be absent."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from uc_attest._internal.demo_model import load_state_exactly
from uc_attest._internal.errors import UsageError


def _model(tied: bool) -> LlamaForCausalLM:
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                         num_key_value_heads=1, tie_word_embeddings=tied)  # fmt: skip
    torch.manual_seed(0)
    return LlamaForCausalLM(config)


def test_a_complete_state_loads_and_a_tied_head_follows_the_embeddings() -> None:
    source = _model(tied=True)
    state = {k: v.clone() for k, v in source.state_dict().items() if k != "lm_head.weight"}
    target = _model(tied=True)
    load_state_exactly(target, state)
    assert torch.equal(target.lm_head.weight, source.model.embed_tokens.weight)
    assert all(torch.equal(target.state_dict()[k], v) for k, v in state.items())


def test_a_missing_tensor_is_refused() -> None:
    state = {k: v.clone() for k, v in _model(tied=False).state_dict().items() if "down_proj" not in k}
    with pytest.raises(UsageError, match=r"1 missing .*down_proj"):
        load_state_exactly(_model(tied=False), state)


def test_an_untied_head_may_not_be_missing() -> None:
    state = {k: v.clone() for k, v in _model(tied=False).state_dict().items() if k != "lm_head.weight"}
    with pytest.raises(UsageError, match="lm_head.weight"):
        load_state_exactly(_model(tied=False), state)


def test_an_unexpected_tensor_is_refused() -> None:
    state = {k: v.clone() for k, v in _model(tied=True).state_dict().items()}
    state["model.layers.7.mlp.extra.weight"] = torch.zeros(2)
    with pytest.raises(UsageError, match="1 unexpected"):
        load_state_exactly(_model(tied=True), state)
