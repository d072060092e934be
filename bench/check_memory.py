"""Peak memory of ``attest check`` is independent of depth (streaming evaluation, one block resident).

Builds two random Llama-style models of the same width (hidden 1024 by
default) with 8 and 32 decoder blocks and a small byte-level tokenizer,
compresses (data-free) and signs each, then runs the real ``attest check``
CLI on each in a fresh child process and reads the child's peak resident
memory (ru_maxrss). Streaming (the default) and ``--no-streaming`` (the whole
model in memory, today's behaviour before streaming) are both measured.
Target: peak RSS ratio 32/8 blocks <= 1.25 for the default (streaming) check.

    nice .venv/bin/python bench/check_memory.py [--hidden 1024] [--windows 4] [--seq-len 128]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from measured_child import run_measured  # noqa: E402


def make_tokenizer(path: Path, vocab: int) -> int:
    """A byte-level BPE tokenizer trained on the built-in evaluation text; returns its vocabulary size."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from uc_attest._internal.evaluate.text import default_eval_text

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=["<eos>"])
    tok.train_from_iterator([default_eval_text()], trainer)
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>").save_pretrained(path)
    return tok.get_vocab_size()


def delivery(tmp: Path, layers: int, hidden: int, windows: int, seq_len: int) -> tuple[Path, Path, Path]:
    """Model, pack, key and bundle for one depth; returns (pack, bundle, public key)."""
    from compress_memory import make_model

    from uc_attest._internal.attest.acceptance import SignOptions, sign_pack
    from uc_attest._internal.evaluate.settings import EvalSettings
    from uc_attest._internal.attest.keys import generate_private_key, public_key_pem
    from uc_attest._internal.compress.options import CompressOptions
    from uc_attest._internal.compress.pipeline import compress_model

    model = tmp / f"model{layers}"
    model.mkdir()
    vocab = make_tokenizer(model, 512)
    make_model(model, layers, hidden, vocab=vocab)
    pack = tmp / f"pack{layers}"
    compress_model(model, pack, CompressOptions(method="datafree"), progress=False)
    key = generate_private_key()
    pub = tmp / f"vendor{layers}.pub"
    pub.write_bytes(public_key_pem(key.public_key()))
    bundle = tmp / f"pack{layers}.sigstore.json"
    sign_pack(SignOptions(pack=pack, key=key, output=bundle, evaluation=EvalSettings(seq_len=seq_len, max_windows=windows, progress=False)))
    return pack, bundle, pub


def run_child(pack: Path, bundle: Path, pub: Path, streaming: bool) -> tuple[float, float, str]:
    """(peak RSS MiB, seconds, last output line) of one ``attest check`` in a fresh process (rusage of exactly that child)."""
    policy = pack.parent / "bench-policy.toml"  # the defaults, without a limit on the ratio to a baseline (none is measured here)
    policy.write_text('version = 1\nname = "bench"\n')
    cmd = [sys.executable, "-c", "from uc_attest._internal.cli.attest import main; main()", "check", str(pack), "--bundle", str(bundle),
           "--key", str(pub), "--policy", str(policy), "--quiet", "--device", "cpu", "--streaming" if streaming else "--no-streaming"]  # fmt: skip
    child = run_measured(cmd, {**os.environ, "PYTHONPATH": str(ROOT)}, ROOT)
    lines = child.output.strip().splitlines()
    if child.exit_code != 0:
        sys.exit(f"attest check failed: {lines[-3:]}")
    return child.usage.ru_maxrss / 1024, child.seconds, lines[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--windows", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--streaming-only", action="store_true", help="skip the --no-streaming checks")
    args = parser.parse_args()
    peaks: dict[tuple[int, bool], float] = {}
    with tempfile.TemporaryDirectory(prefix="uc-check-mem-") as tmp:
        for layers in (8, 32):
            pack, bundle, pub = delivery(Path(tmp), layers, args.hidden, args.windows, args.seq_len)
            size = sum(p.stat().st_size for p in pack.glob("*.safetensors"))
            for streaming in (True,) if args.streaming_only else (True, False):
                peak, seconds, verdict = run_child(pack, bundle, pub, streaming)
                peaks[(layers, streaming)] = peak
                how = "streaming" if streaming else "whole-model"
                print(f"{layers:3d} blocks  pack {size / 2**20:7.1f} MiB  {how:<12} peak RSS {peak:8.1f} MiB  {seconds:7.1f} s  {verdict}", flush=True)
    for streaming in (True,) if args.streaming_only else (True, False):
        ratio = peaks[(32, streaming)] / peaks[(8, streaming)]
        how = "streaming (default)" if streaming else "--no-streaming"
        target = " (target <= 1.25)" if streaming else ""
        print(f"peak RSS ratio 32/8 blocks, {how}: {ratio:.3f}{target}")


if __name__ == "__main__":
    main()
