"""``attest sign`` on a tiny real pack: what is signed, and that bad input writes nothing."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from uc_attest._internal.attest import KeyAnchor, PREDICATE_TYPE, verify_bundle
from uc_attest._internal.attest.acceptance import SignOptions, sign_pack
from uc_attest._internal.attest.keys import public_key_pem, write_keypair
from uc_attest._internal.attest.paths import default_bundle_path, tokens_path_for_bundle
from uc_attest._internal.attest.subjects import split_subjects
from uc_attest._internal.errors import UsageError
from uc_attest._internal.evaluate.tokens import load_token_file
from uc_attest._internal.evaluate.settings import EvalSettings

pytestmark = pytest.mark.slow  # the shared signed delivery (tests/conftest.py)


def _files(pack: Path) -> dict[str, str]:
    return {p.relative_to(pack).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(pack.rglob("*")) if p.is_file()}


def _outputs(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir() if p.name.endswith((".json", ".safetensors"))}


def test_sign_pack_with_baseline(tiny_pack: Path, tiny_model_dir: Path, eval_text: Path, p256_key) -> None:  # type: ignore[no-untyped-def]
    result = sign_pack(SignOptions(pack=tiny_pack, key=p256_key, baseline=tiny_model_dir, eval_text=eval_text,
                                   evaluation=EvalSettings(seq_len=32, max_windows=3, progress=False)))
    assert result.bundle == default_bundle_path(tiny_pack) == tiny_pack.parent / "pack.sigstore.json"
    assert result.tokens == tokens_path_for_bundle(result.bundle) == tiny_pack.parent / "pack.eval-tokens.safetensors"
    verified = verify_bundle(result.bundle, KeyAnchor(p256_key.public_key()))
    assert verified.statement.predicate_type == PREDICATE_TYPE

    # subjects: exactly the files of the pack plus the token file
    attested, tokens_sha = split_subjects(verified.statement)
    assert attested == _files(tiny_pack)
    ids, metadata, digest = load_token_file(result.tokens)
    assert digest == tokens_sha == verified.predicate.measurement.dataset.sha256
    assert metadata["text_sha256"] == hashlib.sha256(eval_text.read_bytes()).hexdigest()
    assert int(ids.numel()) == verified.predicate.measurement.dataset.token_count

    p = verified.predicate
    assert p.pack.manifest_sha256 == attested["ucpack.json"]
    assert {t.name for t in p.pack.tensors} and all(t.digest.startswith("sha256:") for t in p.pack.tensors)
    m = p.measurement
    assert m.windows == 3 == len(m.pack.window_nll) and m.seq_len == 32 and m.max_windows == 3
    assert m.dataset.text_source == "file:eval.txt"
    assert m.baseline is not None and m.ratio == m.pack.perplexity / m.baseline.result.perplexity
    assert {f.path for f in m.baseline.model.files} >= {"config.json", "model.safetensors"}
    assert p.environment.device == "cpu" and p.environment.dtype == "float32"
    assert (p.expires_at - p.signed_at).days == 365
    t = result.timings
    assert t.verify >= 0 and t.evaluation > 0 and t.signing >= 0 and t.baseline_eval is not None


def test_cli_sign_ed25519_default_text_custom_outputs(attest_cli, tiny_pack: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    key_path, pub_path, fp = write_keypair(tmp_path / "vendor", passphrase=b"pw")
    out = tmp_path / "out"
    out.mkdir()
    r = attest_cli(
        "sign", tiny_pack, "--key", key_path, "--seq-len", "16", "--max-windows", "2", "--valid-days", "7",
        "-o", out / "release.sigstore.json", "--quiet", "--json",
        env={"UC_ATTEST_KEY_PASSPHRASE": "pw"},
    )  # fmt: skip
    assert r.rc == 0, r.err
    result = json.loads(r.out)
    assert result["bundle"] == str(out / "release.sigstore.json")
    assert result["tokens"] == str(out / "release.eval-tokens.safetensors")
    assert set(result["timings"]) >= {"verify", "evaluation", "signing", "total"}
    verified = verify_bundle(out / "release.sigstore.json", KeyAnchor(pub_path))
    assert verified.signer.key_fingerprint == fp
    assert verified.predicate.measurement.dataset.text_source.startswith("built-in:")
    assert verified.predicate.measurement.baseline is None and verified.predicate.measurement.ratio is None


def test_cli_human_output(attest_cli, tiny_pack: Path, tmp_path: Path, eval_text: Path) -> None:  # type: ignore[no-untyped-def]
    key_path, _, fp = write_keypair(tmp_path / "vendor")
    r = attest_cli("sign", tiny_pack, "--key", key_path, "--eval-text", eval_text, "--seq-len", "16", "--max-windows", "1", "--quiet")
    assert r.rc == 0, r.err
    assert f"signed by key {fp}" in r.out
    assert "time: verify" in r.out and "evaluation" in r.out and "signing" in r.out


# ---- bad input: one line, the right exit code, nothing written ----------------------------------


def _assert_refused(r, rc: int, folder: Path, before: set[str], fragment: str) -> None:  # type: ignore[no-untyped-def]
    assert r.rc == rc, (r.out, r.err)
    assert r.err.startswith("error:") and r.err.count("\n") == 1, r.err
    assert fragment in r.err, r.err
    assert _outputs(folder) == before
    assert not [p for p in folder.iterdir() if p.name.startswith(".") and p.name.endswith(".tmp")]


def test_wrong_passphrase(attest_cli, tiny_pack: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    key_path, _, _ = write_keypair(tmp_path / "vendor", passphrase=b"right")
    before = _outputs(tiny_pack.parent)
    r = attest_cli("sign", tiny_pack, "--key", key_path, "--quiet", env={"UC_ATTEST_KEY_PASSPHRASE": "wrong"})
    _assert_refused(r, 2, tiny_pack.parent, before, "wrong passphrase")
    r = attest_cli("sign", tiny_pack, "--key", key_path, "--quiet")
    _assert_refused(r, 2, tiny_pack.parent, before, "UC_ATTEST_KEY_PASSPHRASE")


def test_public_key_given_as_signing_key(attest_cli, tiny_pack: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, pub_path, _ = write_keypair(tmp_path / "vendor")
    before = _outputs(tiny_pack.parent)
    _assert_refused(attest_cli("sign", tiny_pack, "--key", pub_path), 2, tiny_pack.parent, before, "public key")


def test_tampered_pack_is_never_signed(attest_cli, tiny_pack: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    key_path, _, _ = write_keypair(tmp_path / "vendor")
    shard = next(tiny_pack.glob("codec-*.safetensors"))
    data = bytearray(shard.read_bytes())
    data[-5] ^= 0x10
    shard.write_bytes(bytes(data))
    before = _outputs(tiny_pack.parent)
    r = attest_cli("sign", tiny_pack, "--key", key_path, "--quiet")
    _assert_refused(r, 1, tiny_pack.parent, before, "pack failed verification")


def test_extra_file_in_pack_is_never_signed(attest_cli, tiny_pack: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    key_path, _, _ = write_keypair(tmp_path / "vendor")
    (tiny_pack / "smuggled.py").write_text("print('hi')\n")
    before = _outputs(tiny_pack.parent)
    _assert_refused(attest_cli("sign", tiny_pack, "--key", key_path, "--quiet"), 1, tiny_pack.parent, before, "smuggled.py")


def test_unreadable_eval_text(attest_cli, tiny_pack: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    key_path, _, _ = write_keypair(tmp_path / "vendor")
    before = _outputs(tiny_pack.parent)
    r = attest_cli("sign", tiny_pack, "--key", key_path, "--eval-text", tmp_path / "absent.txt", "--quiet")
    _assert_refused(r, 2, tiny_pack.parent, before, "absent.txt")
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"\xff\xfe\x00 not utf-8")
    r = attest_cli("sign", tiny_pack, "--key", key_path, "--eval-text", binary, "--quiet")
    _assert_refused(r, 2, tiny_pack.parent, before, "binary.txt")
    r = attest_cli("sign", tiny_pack, "--key", key_path, "--eval-text", tmp_path, "--quiet")
    _assert_refused(r, 2, tiny_pack.parent, before, "directory")
    if os.geteuid() != 0:  # root reads everything
        locked = tmp_path / "locked.txt"
        locked.write_text("text")
        locked.chmod(0)
        r = attest_cli("sign", tiny_pack, "--key", key_path, "--eval-text", locked, "--quiet")
        _assert_refused(r, 2, tiny_pack.parent, before, "locked.txt")


def test_text_shorter_than_a_window(attest_cli, tiny_pack: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    key_path, _, _ = write_keypair(tmp_path / "vendor")
    short = tmp_path / "short.txt"
    short.write_text("too short")
    before = _outputs(tiny_pack.parent)
    r = attest_cli("sign", tiny_pack, "--key", key_path, "--eval-text", short, "--quiet")
    _assert_refused(r, 2, tiny_pack.parent, before, "fewer than one window")


def test_usage_errors(attest_cli, tiny_pack: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    key_path, _, _ = write_keypair(tmp_path / "vendor")
    before = _outputs(tiny_pack.parent)
    _assert_refused(attest_cli("sign", tiny_pack), 2, tiny_pack.parent, before, "--key")
    _assert_refused(attest_cli("sign", tiny_pack, "--key", key_path, "--sigstore"), 2, tiny_pack.parent, before, "exactly one")
    _assert_refused(attest_cli("sign", tiny_pack, "--key", key_path, "--staging"), 2, tiny_pack.parent, before, "--staging")
    _assert_refused(attest_cli("sign", tmp_path / "nopack", "--key", key_path), 2, tiny_pack.parent, before, "no such pack")
    _assert_refused(attest_cli("sign", tiny_pack, "--key", tmp_path / "absent.key"), 2, tiny_pack.parent, before, "absent.key")
    _assert_refused(attest_cli("sign", tiny_pack, "--key", key_path, "-o", tmp_path / "no" / "b.json"), 2, tiny_pack.parent, before, "does not exist")
    _assert_refused(attest_cli("sign", tiny_pack, "--key", key_path, "-o", tiny_pack / "b.json"), 2, tiny_pack.parent, before, "inside the pack")
    _assert_refused(attest_cli("sign", tiny_pack, "--key", key_path, "--baseline", tmp_path / "nomodel"), 2, tiny_pack.parent, before, "baseline")
    _assert_refused(attest_cli("sign", tiny_pack, "--key", key_path, "--valid-days", "0"), 2, tiny_pack.parent, before, "valid-days")


def test_nothing_written_when_the_bundle_cannot_be_written(tiny_pack: Path, tmp_path: Path, p256_key, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The token file is staged first; if the bundle then fails, neither appears."""
    import uc_attest._internal.outputs as outputs

    real = outputs._stage
    calls: list[Path] = []

    def failing(output):  # type: ignore[no-untyped-def]
        calls.append(output.path)
        if str(output.path).endswith(".sigstore.json"):
            raise OSError(28, "No space left on device (simulated)")
        return real(output)

    monkeypatch.setattr(outputs, "_stage", failing)
    before = _outputs(tiny_pack.parent)
    with pytest.raises(UsageError, match="No space left"):
        sign_pack(SignOptions(pack=tiny_pack, key=p256_key, evaluation=EvalSettings(seq_len=16, max_windows=1, progress=False)))
    assert [p.name for p in calls] == ["pack.eval-tokens.safetensors", "pack.sigstore.json"]
    assert _outputs(tiny_pack.parent) == before


@pytest.mark.parametrize("streaming", [True, False], ids=["streaming", "whole-model"])
def test_non_finite_perplexity_is_never_signed(tiny_pack: Path, p256_key, monkeypatch, streaming: bool) -> None:  # type: ignore[no-untyped-def]
    import uc_attest._internal.evaluate.measure as measure
    from uc_attest._internal.attest.errors import AcceptanceTestError

    real = measure.measure_pack

    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        measured = real(*args, **kwargs)
        inf = measured.result.model_copy(update={"perplexity": float("inf"), "perplexity_hex": "inf"})
        return measure.Measured(inf, measured.device)

    monkeypatch.setattr(measure, "measure_pack", broken)
    before = _outputs(tiny_pack.parent)
    with pytest.raises(AcceptanceTestError, match="non-finite"):
        sign_pack(SignOptions(pack=tiny_pack, key=p256_key, evaluation=EvalSettings(seq_len=16, max_windows=1, streaming=streaming, progress=False)))
    assert _outputs(tiny_pack.parent) == before


def test_public_key_pem_round_trip(p256_key, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "k.pub").write_bytes(public_key_pem(p256_key.public_key()))
    assert (tmp_path / "k.pub").read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")


def test_sign_tokenizes_with_the_tokenizer_bytes_it_verified(tiny_pack: Path, eval_text: Path, p256_key, monkeypatch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Misuse: the tokenizer files change on disk after verification; the signed ids are still those of the verified bytes."""
    import uc_attest._internal.attest.acceptance as acceptance

    settings = EvalSettings(seq_len=16, max_windows=2, progress=False)
    honest = sign_pack(SignOptions(pack=tiny_pack, key=p256_key, eval_text=eval_text, evaluation=settings, output=tmp_path / "a.sigstore.json"))
    real_verify = acceptance._verify_pack
    swapped: list[str] = []

    def verify_then_swap(pack_path: Path, progress: bool):  # type: ignore[no-untyped-def]
        verified = real_verify(pack_path, progress)
        for name in verified.small_files:
            if name != "config.json":
                (pack_path / name).write_text('{"not": "a tokenizer"}', encoding="utf-8")
                swapped.append(name)
        return verified

    monkeypatch.setattr(acceptance, "_verify_pack", verify_then_swap)
    after = sign_pack(SignOptions(pack=tiny_pack, key=p256_key, eval_text=eval_text, evaluation=settings, output=tmp_path / "b.sigstore.json"))
    assert swapped, "the pack has tokenizer files to swap"
    (ids_after, meta_after, _), (ids_honest, meta_honest, _) = load_token_file(after.tokens), load_token_file(honest.tokens)
    assert ids_after.tolist() == ids_honest.tolist() and meta_after == meta_honest
    assert after.perplexity == honest.perplexity
