"""Inputs that used to end in "internal error" (an uncaught exception): each is now a specific one-line error.

TOML nested 100k deep (RecursionError in tomllib), a results.json or config.json
nested deep (RecursionError in json), ``uc eval --tokens`` with an id outside the
vocabulary (IndexError in the embedding), ``attest sign`` on a pack whose
tokenizer has more ids than the model's vocabulary (IndexError).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from support.cli import assert_one_line_error, run_cli
from support.delivery import compress, new_key
from support.models import TEXT, build_tokenized_model

from uc_attest._internal.check.results import load_results
from uc_attest._internal.errors import UnreadableInputError
from uc_attest._internal.evaluate.tokens import save_token_file
from uc_attest._internal.policy.loader import parse_policy

pytestmark = pytest.mark.slow  # the shared signed delivery (tests/conftest.py)

DEEP = 100_000


def test_toml_nested_100k_deep_is_a_one_line_error(site: Any, tmp_path: Path) -> None:
    deep = b'version = 1\nname = "x"\n[perplexity]\nx = ' + b"[" * DEEP + b"]" * DEEP + b"\n"
    with pytest.raises(UnreadableInputError, match="nested too deeply"):
        parse_policy(deep, "deep.toml")
    inline = b'version = 1\nname = "x"\nx = ' + b"{a = " * DEEP + b"1" + b"}" * DEEP + b"\n"
    with pytest.raises(UnreadableInputError, match="nested too deeply"):
        parse_policy(inline, "deep.toml")
    policy = tmp_path / "deep.toml"
    policy.write_bytes(deep)
    rc, _out, err = run_cli("attest", "check", site.pack, "--bundle", site.bundle, "--key", site.key, "--policy", policy)
    assert_one_line_error(rc, err, (2,))


def test_results_json_nested_deep_is_a_one_line_error() -> None:
    with pytest.raises(UnreadableInputError, match="nested too deeply"):
        load_results(b"[" * DEEP + b"]" * DEEP)


def test_config_nested_deep_in_a_model_directory_is_a_one_line_error(delivery_root: tuple[Path, Any], tmp_path: Path) -> None:
    model = tmp_path / "model"
    shutil.copytree(delivery_root[0] / "model", model)
    config = json.loads((model / "config.json").read_bytes())
    text = json.dumps(config).replace('"model_type"', '"deep": ' + "[" * DEEP + "]" * DEEP + ', "model_type"')
    (model / "config.json").write_text(text)
    rc, _out, err = run_cli("uc", "eval", model, "--tokens", delivery_root[0] / "pack.eval-tokens.safetensors")
    assert_one_line_error(rc, err, (2,))
    assert "nested too deeply" in err
    (model / "config.json").write_text(json.dumps({**config, "num_hidden_layers": "two"}))
    rc, _out, err = run_cli("uc", "eval", model, "--tokens", delivery_root[0] / "pack.eval-tokens.safetensors")
    assert_one_line_error(rc, err, (2,))


@pytest.mark.parametrize("bad_id", [-1, 10**6, 2**62])
def test_eval_with_a_token_id_outside_the_vocabulary_is_a_one_line_error(site: Any, tmp_path: Path, bad_id: int) -> None:
    ids = torch.arange(200, dtype=torch.int64) % 100
    ids[50] = bad_id
    tokens = tmp_path / "bad.safetensors"
    save_token_file(tokens, ids, {"format": "test"})
    rc, _out, err = run_cli("uc", "eval", site.pack, "--tokens", tokens, "--seq-len", "24", "--quiet")
    assert_one_line_error(rc, err, (2,))
    assert f"token id {bad_id} is outside the model's vocabulary" in err


def test_sign_with_a_tokenizer_larger_than_the_vocabulary_is_a_one_line_error(tmp_path: Path) -> None:
    """A 300-id tokenizer saved beside a model with 280 embeddings: sign refuses before writing anything."""
    from uc_attest._internal.attest.keys import private_key_pem

    model_dir = build_tokenized_model(tmp_path / "model", vocab=300, embeddings=280, layers=1)
    pack = compress(model_dir, tmp_path / "pack")
    key = tmp_path / "vendor.key"
    key.write_bytes(private_key_pem(new_key(), None))
    key.chmod(0o600)
    text = tmp_path / "eval.txt"
    text.write_text(TEXT)
    bundle = tmp_path / "out.sigstore.json"
    rc, _out, err = run_cli("attest", "sign", pack, "--key", key, "--eval-text", text, "--seq-len", "24", "--max-windows", "3",
                            "--output", bundle, "--quiet")  # fmt: skip
    assert_one_line_error(rc, err, (2,))
    assert "outside the model's vocabulary of 280 ids" in err
    assert not bundle.exists() and not list(tmp_path.glob("*.eval-tokens.safetensors"))
