"""Freed memory goes back to the operating system every TRIM_EVERY_BLOCKS blocks, not after each one."""

from __future__ import annotations

import pytest

from uc_attest._internal.evaluate import blocks


class _Libc:
    def __init__(self) -> None:
        self.trims = 0

    def malloc_trim(self, pad: int) -> int:
        assert pad == 0  # every free page, the top of the heap and the middle
        self.trims += 1
        return 1


def test_trims_once_every_n_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    libc = _Libc()
    monkeypatch.setattr(blocks.ctypes, "CDLL", lambda _name: libc)
    monkeypatch.setattr(blocks, "_blocks_since_trim", 0)
    for _ in range(3 * blocks.TRIM_EVERY_BLOCKS - 1):
        blocks.return_freed_memory()
    assert libc.trims == 2  # after blocks 8 and 16: the creep never exceeds 8 blocks' worth
    blocks.return_freed_memory()
    assert libc.trims == 3


def test_without_malloc_trim_nothing_happens(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_libc(_name: object) -> object:
        raise OSError("no C library here")

    monkeypatch.setattr(blocks.ctypes, "CDLL", no_libc)
    monkeypatch.setattr(blocks, "_blocks_since_trim", blocks.TRIM_EVERY_BLOCKS - 1)
    blocks.return_freed_memory()  # the 8th block, where there is nothing to call: no error
