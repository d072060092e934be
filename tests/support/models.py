"""Tiny random-weight models built from transformers configs (no downloads): the one model builder of the tests.

``make_tiny_model`` saves a model of any architecture the compressor supports
(no tokenizer: enough for compressing, loading and measuring on token ids).
``build_tokenized_model`` saves a two-layer Llama with a byte-level BPE tokenizer
trained on ``TEXT``: what signing and checking need (the evaluation text is
tokenized by the pack's own tokenizer).
"""

from __future__ import annotations

from pathlib import Path

import torch
import transformers

COMMON = dict(vocab_size=160, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
              num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)  # fmt: skip


def _cfgs() -> dict[str, transformers.PretrainedConfig]:
    t = transformers
    cfgs = {
        "llama": t.LlamaConfig(**COMMON, tie_word_embeddings=True),
        "mistral": t.MistralConfig(**COMMON),
        "qwen3": t.Qwen3Config(**COMMON, head_dim=16),
        "phi3": t.Phi3Config(**COMMON, pad_token_id=0),
        "gemma": t.GemmaConfig(**COMMON, head_dim=16),
        "olmo2": t.Olmo2Config(**COMMON),
        "gpt2": t.GPT2Config(vocab_size=160, n_embd=64, n_layer=2, n_head=4, n_positions=128),
        "mixtral": t.MixtralConfig(**COMMON, num_local_experts=4, num_experts_per_tok=2),
        "qwen3_moe": t.Qwen3MoeConfig(**{**COMMON, "intermediate_size": 96}, moe_intermediate_size=48, num_experts=4,
                                      num_experts_per_tok=2, head_dim=16, decoder_sparse_step=1),
        "mamba": t.MambaConfig(vocab_size=160, hidden_size=64, state_size=8, num_hidden_layers=2, expand=2,
                               conv_kernel=4, time_step_rank=8),
        "jamba": t.JambaConfig(vocab_size=160, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                               num_attention_heads=4, num_key_value_heads=2, num_experts=2, num_experts_per_tok=1,
                               attn_layer_period=2, attn_layer_offset=1, expert_layer_period=2, expert_layer_offset=1,
                               mamba_d_state=8, mamba_d_conv=4, mamba_expand=2, mamba_dt_rank=8,
                               use_mamba_kernels=False),
    }  # fmt: skip
    return cfgs


ARCHITECTURES = sorted(_cfgs())


def make_tiny_model(name: str, target: Path, seed: int = 0, dtype: torch.dtype = torch.bfloat16) -> Path:
    """Save a tiny random model of architecture ``name`` at ``target`` and return the path."""
    config = _cfgs()[name]
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config)
    with torch.no_grad():
        for p in model.parameters():  # larger than init so that quantization error is visible in logits
            if p.ndim >= 2:
                p.normal_(0, 0.08)
    model = model.to(dtype)
    model.save_pretrained(str(target))
    return target


TEXT = (
    "A customer who cannot reach the internet still checks every byte of the model. "
    "The signature, the hashes, the rebuilt weights and the measured perplexity all agree or the check fails. "
) * 20


def build_tokenized_model(root: Path, seed: int = 0, vocab: int = 300, *, embeddings: int | None = None, layers: int = 2) -> Path:
    """A random Llama with a byte-level BPE tokenizer of ``vocab`` ids trained on ``TEXT``, saved as a Hugging Face directory.

    ``embeddings`` (default: the tokenizer's size) lets a test build a model whose vocabulary the tokenizer overruns.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=["<eos>"])
    tok.train_from_iterator([TEXT], trainer)
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=embeddings or tok.get_vocab_size(), hidden_size=64, intermediate_size=128, num_hidden_layers=layers,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128, tie_word_embeddings=True)  # fmt: skip
    LlamaForCausalLM(config).to(torch.bfloat16).save_pretrained(root, safe_serialization=True)
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>").save_pretrained(root)
    return root


def make_datafree_pack(root: Path, name: str = "llama") -> Path:
    """``root/pack``: a tiny random model of architecture ``name`` (saved at ``root/model``), compressed data-free."""
    from uc_attest._internal.compress.options import CompressOptions
    from uc_attest._internal.compress.pipeline import compress_model

    model = make_tiny_model(name, root / "model")
    compress_model(model, root / "pack", CompressOptions(method="datafree"), progress=False)
    return root / "pack"
