"""The one evaluation settings object: validated once, frozen, and the check's windows are the signed ones."""

from __future__ import annotations

import dataclasses

import pytest

from uc_attest._internal.errors import UsageError
from uc_attest._internal.evaluate.settings import EvalSettings


@pytest.mark.parametrize("bad", [{"seq_len": 1}, {"max_windows": 0}, {"compute_dtype": "float16"}])
def test_settings_that_cannot_measure_are_refused_when_built(bad: dict[str, object]) -> None:
    with pytest.raises(UsageError):
        EvalSettings(**bad)  # type: ignore[arg-type]


def test_settings_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        EvalSettings().seq_len = 4  # type: ignore[misc]


def test_with_windows_replaces_only_the_windows() -> None:
    asked = EvalSettings(seq_len=512, max_windows=None, compute_dtype="bfloat16", streaming=False, device="cpu", progress=False)
    signed = asked.with_windows(24, 3)
    assert (signed.seq_len, signed.max_windows) == (24, 3)
    assert dataclasses.replace(signed, seq_len=512, max_windows=None) == asked
    with pytest.raises(UsageError):
        asked.with_windows(1, None)  # a signed window too short to score is refused, not measured
