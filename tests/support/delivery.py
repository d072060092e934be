"""Compress, sign and check a tiny delivery (the tests' and, through bench/tamper_campaign.py, the campaign's).

A *delivery* is what a customer receives: a pack, its attestation bundle, the
evaluation token file the bundle pins, and the vendor's public key. The tiny
one built here is a two-layer random Llama with a small byte-level tokenizer
(``support.models.build_tokenized_model``), compressed data-free and signed over
three short evaluation windows with the model as baseline, so that a full
``attest check`` (perplexity included) takes about a second. tests/conftest.py
builds one per session (``delivery_root``) and copies it for every test that
tampers with it (``site``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from support.cli import run_cli
from support.models import TEXT, build_tokenized_model
from support.paths import REPO


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


def compress(model: Path, out: Path) -> Path:
    """``model`` compressed data-free (4 bits, blocks of 32: fast) into the pack ``out``."""
    from uc_attest._internal.compress.options import CompressOptions
    from uc_attest._internal.compress.pipeline import compress_model

    compress_model(model, out, CompressOptions(method="datafree", bits=4, block_size=32), progress=False)
    return out


def sign(pack: Path, key: Any, out_dir: Path, *, valid_days: int = 365, baseline: Path | None = None, name: str = "pack") -> tuple[Path, Path]:
    """Sign ``pack`` over ``TEXT`` (three windows of 24 tokens); returns (bundle, tokens) written in ``out_dir``."""
    from uc_attest._internal.attest.acceptance import SignOptions, sign_pack
    from uc_attest._internal.evaluate.settings import EvalSettings

    text = out_dir / "eval.txt"
    if not text.exists():
        text.write_text(TEXT, encoding="utf-8")
    bundle = out_dir / f"{name}.sigstore.json"
    tokens = out_dir / f"{name}.eval-tokens.safetensors"
    sign_pack(SignOptions(pack=pack, key=key, eval_text=text, valid_days=valid_days, baseline=baseline, output=bundle, tokens_output=tokens,
                          evaluation=EvalSettings(seq_len=24, max_windows=3, progress=False)))  # fmt: skip
    return bundle, tokens


def new_key() -> Any:
    from uc_attest._internal.attest.keys import Algorithm, generate_private_key

    return generate_private_key(Algorithm.P256)


def write_public_key(key: Any, path: Path) -> Path:
    from uc_attest._internal.attest.keys import public_key_pem

    path.write_bytes(public_key_pem(key.public_key()))
    return path


def delivery_at(root: Path) -> Any:
    """The delivery whose files lie in ``root`` as ``build_delivery`` lays them out."""
    return load_campaign().Delivery(pack=root / "pack", bundle=root / "pack.sigstore.json",
                                    tokens=root / "pack.eval-tokens.safetensors", key=root / "vendor.pub")  # fmt: skip


def build_delivery(root: Path, seed: int = 0) -> tuple[Any, Any]:
    """model/, pack/, eval.txt, pack.sigstore.json, pack.eval-tokens.safetensors and vendor.pub; returns (delivery, vendor key)."""
    root.mkdir(parents=True, exist_ok=True)
    # another seed, another vocabulary size: the tokenizers (trained on the same text) then split the
    # evaluation text differently for certain; with equal sizes, BPE training's tie-breaking decided
    # whether two deliveries' token files differed, and once they came out identical
    model = build_tokenized_model(root / "model", seed=seed, vocab=300 + 16 * seed)
    pack = compress(model, root / "pack")
    key = new_key()
    write_public_key(key, root / "vendor.pub")
    sign(pack, key, root, baseline=model)
    return delivery_at(root), key


def copy_delivery(src_root: Path, dest_root: Path) -> Any:
    """A private copy of the delivery in ``src_root``, which a test may tamper with."""
    shutil.copytree(src_root, dest_root, symlinks=True)
    return delivery_at(dest_root)


def check(delivery: Any, json_out: Path, policy: str | None = None, extra: tuple[object, ...] = ()) -> tuple[int, str, str, dict[str, Any] | None]:
    """``attest check`` on a delivery, with crashes surfacing as exceptions (UC_ATTEST_DEBUG)."""
    with contextlib.suppress(FileNotFoundError):
        json_out.unlink()
    args: list[object] = ["check", delivery.pack, "--bundle", delivery.bundle, "--tokens", delivery.tokens,
                          "--key", delivery.key, "--json", json_out, "--quiet", *extra]  # fmt: skip
    if policy:
        args += ["--policy", policy]
    rc, out, err = run_cli("attest", *args, env={"UC_ATTEST_DEBUG": "1"})
    results = json.loads(json_out.read_bytes()) if json_out.exists() else None
    return rc, out, err, results


def failed_checks(results: dict[str, Any] | None) -> set[str]:
    return {c["name"] for c in results["checks"] if c["status"] == "FAIL"} if results else set()


def resign(bundle: Path, key: Any, hint: str | None = None, edit: Any = None) -> None:
    """Re-sign ``bundle``'s statement (after ``edit(statement)``, if given) with ``key``: a forger who holds a key."""
    import base64

    from uc_attest._internal.attest.bundle import KeyModeBundle
    from uc_attest._internal.attest.dsse import sign_envelope
    from uc_attest._internal.attest.keys import fingerprint

    data = json.loads(bundle.read_bytes())
    payload = base64.b64decode(data["dsseEnvelope"]["payload"])
    if edit is not None:
        statement = json.loads(payload)
        edit(statement)
        payload = json.dumps(statement).encode()
    envelope = sign_envelope(payload, key)
    bundle.write_bytes(KeyModeBundle.build(envelope, hint or fingerprint(key.public_key())).to_json_bytes())
