"""Shared pieces of the compressor tests: a small calibration text and fast options."""

from __future__ import annotations

from pathlib import Path

from uc_attest._internal.compress.options import CompressOptions

TEXT = " ".join(
    f"Return the {w} of the object, raising ValueError when {v} is not a valid {w}." for w, v in
    [("length", "size"), ("name", "key"), ("value", "index"), ("path", "file"), ("mode", "flag"), ("count", "limit")]
) * 20  # fmt: skip


def calibration_file(tmp_path: Path) -> Path:
    path = tmp_path / "calibration.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


def fast_options(tmp_path: Path, **kw: object) -> CompressOptions:
    base: dict[str, object] = dict(samples=6, seq_len=48, calibration_file=calibration_file(tmp_path))
    base.update(kw)
    return CompressOptions(**base)  # type: ignore[arg-type]
