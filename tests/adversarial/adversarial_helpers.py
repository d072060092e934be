"""Builders and runners shared by the adversarial tests (and, through bench/tamper_campaign.py, the campaign).

A *delivery* is what a customer receives: a pack, its attestation bundle, the
evaluation token file the bundle pins, and the vendor's public key. The tiny
one built here is a two-layer random Llama with a small byte-level tokenizer,
compressed data-free and signed over three short evaluation windows, so that a
full ``attest check`` (perplexity included) takes about a second.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]

TEXT = (
    "A customer who cannot reach the internet still checks every byte of the model. "
    "The signature, the hashes, the rebuilt weights and the measured perplexity all agree or the check fails. "
) * 20


def load_campaign() -> Any:
    """bench/tamper_campaign.py as a module (bench/ is not a package)."""
    name = "tamper_campaign"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO / "bench" / "tamper_campaign.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def build_model(root: Path, seed: int = 0, vocab: int = 300) -> Path:
    """A two-layer random Llama with a byte-level BPE tokenizer, saved as a Hugging Face directory."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator([TEXT], trainers.BpeTrainer(vocab_size=vocab, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=["<eos>"]))
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=tok.get_vocab_size(), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64, tie_word_embeddings=True)  # fmt: skip
    LlamaForCausalLM(config).to(torch.bfloat16).save_pretrained(root, safe_serialization=True)
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>").save_pretrained(root)
    return root


def compress(model: Path, out: Path) -> Path:
    from uc_attest.compress.options import CompressOptions
    from uc_attest.compress.pipeline import compress_model

    compress_model(model, out, CompressOptions(method="datafree", bits=4, block_size=32), progress=False)
    return out


def sign(pack: Path, key: Any, out_dir: Path, *, valid_days: int = 365, baseline: Path | None = None, name: str = "pack") -> tuple[Path, Path]:
    """Sign ``pack``; returns (bundle, tokens) written in ``out_dir``."""
    from uc_attest.attest.acceptance import SignOptions, sign_pack

    text = out_dir / "eval.txt"
    if not text.exists():
        text.write_text(TEXT, encoding="utf-8")
    bundle = out_dir / f"{name}.sigstore.json"
    tokens = out_dir / f"{name}.eval-tokens.safetensors"
    sign_pack(SignOptions(pack=pack, key=key, eval_text=text, seq_len=24, max_windows=3, valid_days=valid_days,
                          baseline=baseline, output=bundle, tokens_output=tokens, progress=False))  # fmt: skip
    return bundle, tokens


def new_key() -> Any:
    from uc_attest.attest.keys import Algorithm, generate_private_key

    return generate_private_key(Algorithm.P256)


def write_public_key(key: Any, path: Path) -> Path:
    from uc_attest.attest.keys import public_key_pem

    path.write_bytes(public_key_pem(key.public_key()))
    return path


def build_delivery(root: Path, seed: int = 0) -> Any:
    """model/, pack/, pack.sigstore.json, pack.eval-tokens.safetensors and vendor.pub (+ vendor key object in .key_obj)."""
    campaign = load_campaign()
    root.mkdir(parents=True, exist_ok=True)
    # another seed, another vocabulary size: the tokenizers (trained on the same text) then split the
    # evaluation text differently for certain; with equal sizes, BPE training's tie-breaking decided
    # whether two deliveries' token files differed, and once they came out identical
    model = build_model(root / "model", seed=seed, vocab=300 + 16 * seed)
    pack = compress(model, root / "pack")
    key = new_key()
    pub = write_public_key(key, root / "vendor.pub")
    bundle, tokens = sign(pack, key, root, baseline=model)
    delivery = campaign.Delivery(pack=pack, bundle=bundle, tokens=tokens, key=pub)
    return delivery, key


def copy_delivery(src_root: Path, dest_root: Path) -> Any:
    campaign = load_campaign()
    shutil.copytree(src_root, dest_root, symlinks=True)
    return campaign.Delivery(pack=dest_root / "pack", bundle=dest_root / "pack.sigstore.json",
                             tokens=dest_root / "pack.eval-tokens.safetensors", key=dest_root / "vendor.pub")  # fmt: skip


def run_cli(group_name: str, *args: object, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run ``uc`` or ``attest`` in process through the real entry plumbing: (exit code, stdout, stderr)."""
    from click.testing import CliRunner

    from uc_attest.cli.common import run_group

    if group_name == "attest":
        from uc_attest.cli.attest import attest_group as group
    else:
        from uc_attest.cli.uc import uc_group as group
    runner = CliRunner()
    saved = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})
    try:
        with runner.isolation() as (out, err, _):
            try:
                run_group(group, [str(a) for a in args])
                rc = 0
            except SystemExit as exc:
                rc = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
            return rc, out.getvalue().decode(errors="replace"), err.getvalue().decode(errors="replace")
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def check(delivery: Any, json_out: Path, policy: str | None = None, extra: tuple[object, ...] = ()) -> tuple[int, str, str, dict[str, Any] | None]:
    """``attest check`` on a delivery, with crashes surfacing as exceptions (UC_ATTEST_DEBUG)."""
    with contextlib.suppress(FileNotFoundError):
        json_out.unlink()
    args: list[object] = ["check", delivery.pack, "--bundle", delivery.bundle, "--tokens", delivery.tokens,
                          "--key", delivery.key, "--json", json_out, "--quiet", *extra]  # fmt: skip
    if policy:
        args += ["--policy", policy]
    rc, out, err = run_cli("attest", *args, env={"UC_ATTEST_DEBUG": "1"})
    import json

    results = json.loads(json_out.read_bytes()) if json_out.exists() else None
    return rc, out, err, results


def failed_checks(results: dict[str, Any] | None) -> set[str]:
    return {c["name"] for c in results["checks"] if c["status"] == "FAIL"} if results else set()


def assert_one_line_error(rc: int, err: str, codes: tuple[int, ...] = (1, 2)) -> None:
    assert rc in codes, (rc, err)
    assert "Traceback" not in err and "internal error" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
