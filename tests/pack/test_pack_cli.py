"""uc verify / inspect / compress on good and bad input: verdict lines, exit codes, no tracebacks."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from support.cli import assert_one_line_error, run_cli
from support.models import make_datafree_pack
from support.pack_edit import reseal


UC = [sys.executable, "-c", "from uc_attest._internal.cli.uc import main; main()"]


def uc(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the real console entry point in a subprocess (exit code and streams as a user sees them)."""
    return subprocess.run([*UC, *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def good_pack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_datafree_pack(tmp_path_factory.mktemp("packcli"))


@pytest.fixture
def pack_copy(good_pack: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "pack"
    shutil.copytree(good_pack, dst)
    return dst


def assert_process_error(proc: subprocess.CompletedProcess[str], code: int) -> None:
    """The real entry point in a child process: exit ``code`` and one ``error:`` line, no traceback."""
    assert proc.returncode == code, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    err_lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(err_lines) == 1, proc.stderr


def test_verify_pass_ends_with_verdict(good_pack: Path) -> None:
    proc = uc("verify", str(good_pack), "--quiet")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[-1] == "VERIFY: PASS"


def test_verify_json(good_pack: Path) -> None:
    proc = uc("verify", str(good_pack), "--json", "--quiet")
    assert proc.returncode == 0
    lines = proc.stdout.splitlines()
    assert lines[-1] == "VERIFY: PASS"
    report = json.loads("\n".join(lines[:-1]))
    assert report["ok"] is True and report["tensors"] and all(t["ok"] for t in report["tensors"])


NO_FRAMEWORK = "import sys; sys.modules['torch'] = None; sys.modules['transformers'] = None; "


def test_verify_needs_neither_torch_nor_transformers(good_pack: Path) -> None:
    """The integrity walk (hashes, reconstruction, digests) runs where importing torch would fail."""
    proc = subprocess.run([sys.executable, "-c", NO_FRAMEWORK + "from uc_attest._internal.cli.uc import main; main()",
                           "verify", str(good_pack), "--json", "--quiet"], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads("\n".join(proc.stdout.splitlines()[:-1]))
    assert report["ok"] and report["architecture_checked"] is False
    assert len(report["tensors"]) > 0 and all(t["ok"] for t in report["tensors"])


def test_verify_without_torch_still_fails_a_flipped_code_byte(pack_copy: Path) -> None:
    shard = next(pack_copy.glob("codec-*.safetensors"))
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0x10
    shard.write_bytes(bytes(data))
    proc = subprocess.run([sys.executable, "-c", NO_FRAMEWORK + "from uc_attest._internal.cli.uc import main; main()",
                           "verify", str(pack_copy), "--quiet"], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 1 and proc.stdout.splitlines()[-1] == "VERIFY: FAIL", proc.stdout + proc.stderr


def test_architecture_check_is_opt_in_and_finds_a_config_that_does_not_fit(pack_copy: Path) -> None:
    """A config re-sealed to a wider FFN: integrity holds, the architecture check names the misfit."""
    config_path = pack_copy / "config.json"
    config = json.loads(config_path.read_bytes())
    config["intermediate_size"] *= 2
    reseal(pack_copy, "config.json", json.dumps(config).encode())
    plain = run_cli("uc", "verify", str(pack_copy), "--quiet")
    assert plain.rc == 0 and "not checked against the tensors" in plain.out, plain.out
    deep = run_cli("uc", "verify", str(pack_copy), "--quiet", "--architecture")
    assert deep.rc == 1 and deep.out.splitlines()[-1] == "VERIFY: FAIL", deep.out
    assert "does not fit the config" in deep.out, deep.out


def test_every_single_byte_flip_fails(pack_copy: Path) -> None:
    """Flip one byte at several places in every file of the pack: each must give VERIFY: FAIL, exit 1."""
    files = sorted(p for p in pack_copy.iterdir() if p.is_file())
    for path in files:
        original = path.read_bytes()
        positions = sorted({0, len(original) // 3, len(original) // 2, len(original) - 1})
        for pos in positions:
            data = bytearray(original)
            data[pos] ^= 0x01
            path.write_bytes(bytes(data))
            proc = run_cli("uc", "verify", str(pack_copy), "--quiet")
            assert proc.rc == 1, (path.name, pos, proc.out, proc.err)
            assert proc.out.splitlines()[-1] == "VERIFY: FAIL"
            path.write_bytes(original)


def test_extra_file_and_symlink_fail(pack_copy: Path) -> None:
    (pack_copy / "notes.txt").write_text("hello")
    proc = uc("verify", str(pack_copy), "--quiet")
    assert proc.returncode == 1 and "notes.txt: file present but not in the manifest" in proc.stdout
    (pack_copy / "notes.txt").unlink()
    cfg = pack_copy / "config.json"
    real = pack_copy.parent / "config-real.json"
    shutil.move(cfg, real)
    os.symlink(real, cfg)
    proc = uc("verify", str(pack_copy), "--quiet")
    assert proc.returncode == 1 and "symlink" in proc.stdout


def test_missing_shard_fails(pack_copy: Path) -> None:
    next(pack_copy.glob("codec-*.safetensors")).unlink()
    proc = uc("verify", str(pack_copy), "--quiet")
    assert proc.returncode == 1 and "missing" in proc.stdout


def test_truncated_shard_fails(pack_copy: Path) -> None:
    shard = next(pack_copy.glob("codec-*.safetensors"))
    shard.write_bytes(shard.read_bytes()[:-100])
    proc = uc("verify", str(pack_copy), "--quiet")
    assert proc.returncode == 1 and proc.stdout.splitlines()[-1] == "VERIFY: FAIL"


def _rehash(pack: Path, name: str) -> None:
    """Make the manifest agree with a modified file, as an attacker would."""
    import hashlib

    manifest = json.loads((pack / "ucpack.json").read_text())
    for f in manifest["files"]:
        if f["path"] == name:
            data = (pack / name).read_bytes()
            f["size"], f["sha256"] = len(data), hashlib.sha256(data).hexdigest()
    (pack / "ucpack.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("header", ["huge", "overlap"])
def test_malformed_safetensors_header_fails_even_when_rehashed(pack_copy: Path, header: str) -> None:
    shard = next(pack_copy.glob("codec-*.safetensors"))
    data = bytearray(shard.read_bytes())
    (n,) = struct.unpack("<Q", data[:8])
    if header == "huge":
        data[:8] = struct.pack("<Q", 1 << 60)
    else:
        hdr = json.loads(data[8 : 8 + n])
        keys = [k for k in hdr if k != "__metadata__"]
        hdr[keys[1]]["data_offsets"] = list(hdr[keys[0]]["data_offsets"])
        raw = json.dumps(hdr).encode()
        raw += b" " * (n - len(raw)) if len(raw) <= n else b""
        data[8 : 8 + n] = raw[:n] if len(raw) >= n else raw
    shard.write_bytes(bytes(data))
    _rehash(pack_copy, shard.name)
    proc = uc("verify", str(pack_copy), "--quiet")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout.splitlines()[-1] == "VERIFY: FAIL"


@pytest.mark.parametrize("bad_path", ["../outside.safetensors", "/etc/passwd", "a/../../b"])
def test_manifest_paths_outside_the_pack_are_refused(pack_copy: Path, bad_path: str) -> None:
    manifest = json.loads((pack_copy / "ucpack.json").read_text())
    manifest["files"][0]["path"] = bad_path
    (pack_copy / "ucpack.json").write_text(json.dumps(manifest))
    proc = run_cli("uc", "verify", str(pack_copy), "--quiet")
    assert proc.rc == 1 and proc.out.splitlines()[-1] == "VERIFY: FAIL"
    assert "leaves the pack" in proc.out or "absolute" in proc.out or "normalised" in proc.out


def test_not_a_pack_and_missing_path(tmp_path: Path) -> None:
    assert_process_error(uc("verify", str(tmp_path / "nope")), 2)
    assert_process_error(uc("verify", str(tmp_path)), 2)
    (tmp_path / "ucpack.json").write_text(json.dumps({"format": "uc-pack", "format_version": "2.0"}))
    assert_process_error(uc("verify", str(tmp_path)), 2)  # a future major version: not readable here
    (tmp_path / "ucpack.json").write_text("{not json")
    proc = uc("verify", str(tmp_path))
    assert proc.returncode == 1 and proc.stdout.splitlines()[-1] == "VERIFY: FAIL"  # a corrupt manifest
    assert "Traceback" not in proc.stderr


def test_inspect_reports_effective_bits(good_pack: Path) -> None:
    proc = uc("inspect", str(good_pack), "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["quantized_params"] > 0
    expected = summary["codec_bytes"] * 8 / summary["quantized_params"]
    assert abs(summary["effective_bits_per_weight"] - expected) < 1e-5


def test_compress_bad_input_and_no_partial_output(tmp_path: Path) -> None:
    # in process (compress imports torch: seconds per child); the entry point itself is exercised by the verify tests above
    r = run_cli("uc", "compress", tmp_path / "missing", "-o", tmp_path / "out")
    assert_one_line_error(r.rc, r.err, (2,))
    (tmp_path / "empty").mkdir()
    r = run_cli("uc", "compress", tmp_path / "empty", "-o", tmp_path / "out")
    assert_one_line_error(r.rc, r.err, (2,))
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


@pytest.mark.parametrize("spec", ["*.k_proj.*", "*.k_proj.*=9", "=6", "*.k_proj.*=six"])
def test_compress_malformed_bits_for_is_a_usage_error(tmp_path: Path, spec: str) -> None:
    r = run_cli("uc", "compress", tmp_path / "missing", "-o", tmp_path / "out", "--bits-for", spec)
    assert_one_line_error(r.rc, r.err, (2,))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("spec", ["*.mlp.*", "*.mlp.*=4", "*.mlp.*=8192", "=128", "*.mlp.*=big"])
def test_compress_malformed_block_size_for_is_a_usage_error(tmp_path: Path, spec: str) -> None:
    r = run_cli("uc", "compress", tmp_path / "missing", "-o", tmp_path / "out", "--block-size-for", spec)
    assert_one_line_error(r.rc, r.err, (2,))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("workers", [1, 2])
def test_reused_read_buffers_keep_each_tensor_its_own_bytes(pack_copy: Path, workers: int) -> None:
    """Offloaded slots are read into per-worker buffers used again and again: a flipped code byte
    must fail exactly its own tensor, never a neighbour that later reuses the buffer."""
    from uc_attest._internal.pack.reader import open_pack
    from uc_attest._internal.pack.verify import verify_pack

    assert verify_pack(pack_copy, progress=False, workers=workers).report.ok
    manifest = open_pack(pack_copy).manifest
    quantized = [t for t in manifest.tensors if t.kind == "quantized"]
    assert len(quantized) > 2 * workers  # buffers do get reused
    for entry in quantized[:: max(1, len(quantized) // 4)]:
        shard = pack_copy / entry.storage.file  # type: ignore[union-attr]
        original = shard.read_bytes()
        header_len = struct.unpack("<Q", original[:8])[0]
        start, end = json.loads(original[8 : 8 + header_len])[entry.storage.codes]["data_offsets"]  # type: ignore[union-attr]
        data = bytearray(original)
        data[8 + header_len + (start + end) // 2] ^= 0x10
        shard.write_bytes(bytes(data))
        report = verify_pack(pack_copy, progress=False, workers=workers).report
        shard.write_bytes(original)
        assert not report.ok
        assert [t.name for t in report.tensors if not t.ok] == [entry.name]
