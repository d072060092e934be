"""The public Python API: a closed, stable surface over the private ``uc_attest._internal`` tree (issue 29, item 12).

Why pinned: a name added to ``uc_attest.__all__`` is a promise to every vendor's
and customer's script; one removed breaks them. This test makes either a
deliberate edit of the list below, never a side effect of moving a module.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest
from support.models import build_tokenized_model
from support.paths import REPO, child_env

import uc_attest

PUBLIC = {
    "__version__", "UcError", "UsageError", "UnreadableInputError", "VerificationError", "AttestationError",  # errors and their exit codes
    "compress_model", "verify_pack", "load_model", "generate_keypair", "sign_pack", "verify_bundle", "check_pack", "verify_report",
    "KeyAnchor", "KeylessAnchor", "TrustAnchor", "CompressOptions", "PackManifest", "VerifiedPack", "SignResult", "VerifiedAttestation",
    "Results", "ReportVerification",
}


def test_the_public_surface_is_exactly_the_closed_list() -> None:
    assert set(uc_attest.__all__) == PUBLIC and len(uc_attest.__all__) == len(PUBLIC)
    assert uc_attest.__all__ == sorted(uc_attest.__all__) and dir(uc_attest) == sorted(PUBLIC)


def test_every_public_name_resolves_and_none_is_an_internal_module() -> None:
    for name in PUBLIC:
        value = getattr(uc_attest, name)
        assert value is not None, name
        assert not isinstance(value, types.ModuleType), f"uc_attest.{name} is a module"
    internal_modules = {p.stem for p in (REPO / "uc_attest" / "_internal").iterdir() if p.suffix == ".py" or (p / "__init__.py").is_file()}
    # internal_move.sh rewrites `uc_attest.<internal module>`; a public name of the same spelling would be rewritten too
    assert not internal_modules & set(PUBLIC), "a public name shadows an internal module's name"
    assert sorted(p.name for p in (REPO / "uc_attest").iterdir() if p.name != "__pycache__") == ["__init__.py", "__main__.py", "_internal"]


def test_an_unknown_or_internal_name_is_not_an_attribute() -> None:
    for name in ("pack", "compress", "evaluate_streaming", "_internal_x"):
        with pytest.raises(AttributeError):
            getattr(uc_attest, name)


def test_errors_carry_the_cli_exit_codes() -> None:
    assert (uc_attest.VerificationError.exit_code, uc_attest.UsageError.exit_code, uc_attest.UnreadableInputError.exit_code) == (1, 2, 2)
    assert issubclass(uc_attest.AttestationError, uc_attest.VerificationError)
    assert all(issubclass(e, uc_attest.UcError) for e in (uc_attest.UsageError, uc_attest.UnreadableInputError, uc_attest.VerificationError))


def test_importing_uc_attest_imports_neither_torch_nor_transformers() -> None:
    code = "import sys, uc_attest; print(uc_attest.__version__); print(sorted(m for m in ('torch', 'transformers', 'numpy', 'cryptography') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], env=child_env(), capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0] == uc_attest.__version__ and out[1] == "[]"


def test_python_dash_m_uc_attest_runs_the_commands() -> None:
    run = [sys.executable, "-m", "uc_attest"]
    for group in ("uc", "attest"):
        proc = subprocess.run([*run, group, "--version"], env=child_env(), capture_output=True, text=True)
        assert proc.returncode == 0 and proc.stdout.startswith(f"{group}, version {uc_attest.__version__}"), proc.stdout + proc.stderr
    proc = subprocess.run([*run, "nosuch"], env=child_env(), capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.startswith("usage: python -m uc_attest {uc,attest,demo}")


USER_SCRIPT = """
    import json, sys
    from pathlib import Path
    import uc_attest

    model_dir, work = Path(sys.argv[1]), Path(sys.argv[2])
    manifest = uc_attest.compress_model(model_dir, work / "pack", uc_attest.CompressOptions(method="datafree", bits=4, block_size=32))
    verified = uc_attest.verify_pack(work / "pack")
    model = uc_attest.load_model(verified, expected_manifest_sha256=verified.report.manifest_sha256)
    again = uc_attest.load_model(work / "pack")
    same = all(a.equal(b) for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=True))
    try:
        uc_attest.load_model(work / "pack", expected_manifest_sha256="0" * 64)
        refused = None
    except uc_attest.VerificationError as exc:
        refused = exc.exit_code
    print(json.dumps({"tensors": len(manifest.tensors), "verified": len(verified.report.tensors), "type": type(model).__name__,
                      "same": same, "refused": refused}))
"""


def test_a_user_script_with_only_the_public_api_compresses_verifies_and_loads(tmp_path: Path) -> None:
    model = build_tokenized_model(tmp_path / "model")
    script = tmp_path / "user.py"
    script.write_text(textwrap.dedent(USER_SCRIPT))
    assert "_internal" not in script.read_text()
    proc = subprocess.run([sys.executable, str(script), str(model), str(tmp_path)], env=child_env(), capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.splitlines()[-1])
    assert got["tensors"] == got["verified"] > 0
    assert got["type"] == "LlamaForCausalLM" and got["same"] is True and got["refused"] == 1


def test_verify_pack_raises_on_a_tampered_shard_instead_of_returning(tmp_path: Path) -> None:
    """The forgery: one byte of a shard changed. The public verify_pack must raise (exit code 1), never return a pack."""
    model = build_tokenized_model(tmp_path / "model")
    pack = uc_attest.compress_model(model, tmp_path / "pack", uc_attest.CompressOptions(method="datafree", bits=4, block_size=32))
    shard = tmp_path / "pack" / sorted(f.path for f in pack.files if f.path.endswith(".safetensors"))[0]
    data = bytearray(shard.read_bytes())
    data[-1] ^= 1
    shard.write_bytes(bytes(data))
    with pytest.raises(uc_attest.VerificationError) as caught:
        uc_attest.verify_pack(tmp_path / "pack")
    assert caught.value.exit_code == 1 and "NOT VERIFIED" in str(caught.value) and "\n" not in str(caught.value)
    with pytest.raises(uc_attest.VerificationError):
        uc_attest.load_model(tmp_path / "pack")


@pytest.mark.slow
def test_sign_verify_and_check_through_the_public_api(tmp_path: Path, tiny_pack: Path, tiny_model_dir: Path, eval_text: Path) -> None:
    """A vendor signs and a customer verifies and checks, with public names only; a bundle of another signer is refused."""
    uc_attest.generate_keypair(tmp_path / "vendor")
    result = uc_attest.sign_pack(tiny_pack, tmp_path / "vendor.key", baseline=tiny_model_dir, eval_text=eval_text, seq_len=24, max_windows=3)
    vendor = uc_attest.KeyAnchor(tmp_path / "vendor.pub")
    statement = uc_attest.verify_bundle(result.bundle, vendor)
    assert statement.predicate.measurement.pack.perplexity == result.perplexity
    results = uc_attest.check_pack(tiny_pack, vendor, policy="development")
    assert results.verdict.value == "PASS", [c for c in results.checks if c.status.value != "PASS"]
    uc_attest.generate_keypair(tmp_path / "mallory")
    with pytest.raises(uc_attest.AttestationError):
        uc_attest.verify_bundle(result.bundle, uc_attest.KeyAnchor(tmp_path / "mallory.pub"))
    mallory = uc_attest.check_pack(tiny_pack, uc_attest.KeyAnchor(tmp_path / "mallory.pub"), policy="development")
    assert mallory.verdict.value == "FAIL"
    with pytest.raises(uc_attest.UsageError):
        uc_attest.generate_keypair(tmp_path / "other", algorithm="rsa")
