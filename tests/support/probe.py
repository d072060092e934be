"""A small trained model, its signed delivery, and loopback servers for the probe tests.

The model is trained for a few dozen steps on the evaluation text, so that it
predicts it well (a random model's log-probabilities hardly depend on its
weights, and a probe could not tell a perturbed copy from the original).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

TEXT = (
    "A probe sends the signed windows to the endpoint and reads back the log-probabilities of every token. "
    "The served model must predict the attested text as the measured one did, window by window. "
) * 24
SEQ_LEN = 32


def train_tokenizer(text: str, vocab_size: int = 300) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator([text], trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=["<eos>"]))
    return tok


def build_trained_model(root: Path) -> Path:
    """A two-layer Llama trained briefly on TEXT (bf16 on disk), with its tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = train_tokenizer(TEXT)
    torch.manual_seed(3)
    config = LlamaConfig(vocab_size=tok.get_vocab_size(), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64, tie_word_embeddings=True)  # fmt: skip
    model = LlamaForCausalLM(config)
    ids = torch.tensor(tok.encode(TEXT).ids)
    n = ids.numel() // SEQ_LEN
    batches = ids[: n * SEQ_LEN].reshape(n, SEQ_LEN)
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for step in range(40):
        batch = batches[torch.randint(0, n, (8,), generator=torch.Generator().manual_seed(step))]
        loss = model(input_ids=batch, labels=batch).loss
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.to(torch.bfloat16).save_pretrained(root, safe_serialization=True)
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>").save_pretrained(root)
    return root


def build_delivery(root: Path) -> Path:
    """model/, pack/ (4-bit data-free), the signed bundle and token file, vendor.pub, and served/ (uc export)."""
    from uc_attest._internal.attest.acceptance import SignOptions, sign_pack
    from uc_attest._internal.evaluate.settings import EvalSettings
    from uc_attest._internal.attest.keys import Algorithm, generate_private_key, public_key_pem
    from uc_attest._internal.compress.options import CompressOptions
    from uc_attest._internal.compress.pipeline import compress_model
    from uc_attest._internal.pack.export import export_pack

    model = build_trained_model(root / "model")
    compress_model(model, root / "pack", CompressOptions(method="datafree", bits=4, block_size=32), progress=False)
    (root / "eval.txt").write_text(TEXT, encoding="utf-8")
    key = generate_private_key(Algorithm.P256)
    (root / "vendor.pub").write_bytes(public_key_pem(key.public_key()))
    sign_pack(SignOptions(pack=root / "pack", key=key, eval_text=root / "eval.txt", evaluation=EvalSettings(seq_len=SEQ_LEN, progress=False)))
    export_pack(root / "pack", root / "served")
    return root


@contextmanager
def serving(engine: Any, handler: Any = None) -> Iterator[str]:
    """Serve ``engine`` on 127.0.0.1 (a free port) in a thread; yields the base URL."""
    from http.server import HTTPServer

    from uc_attest._internal.probe.serve_reference import make_server

    server = make_server(engine) if handler is None else HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
