"""Slots too large to hold are checked on a helper thread while the reading thread hashes ahead (stream_verify).

The tiny model's tensors are small, so the limits are lowered here: every tensor
slot is then streamed, in chunks far smaller than a reconstruction group, so
that reads cross chunk boundaries everywhere. A resealed edit (file hashes fixed
up, digests not) must still fail exactly the tensor it touched, whether the
edit is in a passthrough tensor or in quantized codes, at the start, the middle
or the last byte of a slot.
"""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import pytest

from support.pack_edit import reseal
from support.models import make_datafree_pack
from uc_attest._internal.pack import stream_verify
from uc_attest._internal.pack.reader import open_pack
from uc_attest._internal.pack.verify import verify_pack


@pytest.fixture(scope="module")
def pack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_datafree_pack(tmp_path_factory.mktemp("streamed"))


@pytest.fixture
def streamed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stream_verify, "OFFLOAD_LIMIT", 0)  # nothing offloaded: every slot streamed
    monkeypatch.setattr(stream_verify, "CHUNK_BYTES", 1000)  # not a divisor of anything: reads straddle chunks


@pytest.mark.usefixtures("streamed")
@pytest.mark.parametrize("workers", [1, 2])
def test_streamed_slots_pass_a_good_pack(pack: Path, workers: int) -> None:
    report = verify_pack(pack, progress=False, workers=workers).report
    assert report.ok, report.failures
    assert report.tensors and all(t.ok for t in report.tensors)


def _slot_span(shard: bytes, key: str) -> tuple[int, int]:
    header_len = struct.unpack("<Q", shard[:8])[0]
    start, end = json.loads(shard[8 : 8 + header_len])[key]["data_offsets"]
    return 8 + header_len + start, 8 + header_len + end


@pytest.mark.usefixtures("streamed")
@pytest.mark.parametrize("kind", ["passthrough", "quantized"])
@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_resealed_edit_in_a_streamed_slot_fails_exactly_that_tensor(pack: Path, tmp_path: Path, kind: str, where: str) -> None:
    copy = tmp_path / "pack"
    shutil.copytree(pack, copy)
    manifest = open_pack(copy).manifest
    entry = max((t for t in manifest.tensors if t.kind == kind), key=lambda t: len(t.name))
    storage = entry.storage
    key = storage.codes if kind == "quantized" else storage.key  # type: ignore[union-attr]
    data = bytearray((copy / storage.file).read_bytes())
    start, end = _slot_span(bytes(data), key)
    data[{"first": start, "middle": (start + end) // 2, "last": end - 1}[where]] ^= 0x04
    reseal(copy, storage.file, bytes(data))  # the file hash is made to match: only the digest can notice
    report = verify_pack(copy, progress=False, workers=2).report
    assert not report.ok
    assert [t.name for t in report.tensors if not t.ok] == [entry.name]


@pytest.mark.usefixtures("streamed")
def test_a_check_that_raises_does_not_hang_and_the_file_is_still_hashed(pack: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The consumer stopping early hands its buffers back; the reading thread finishes the file hash and re-raises."""

    def broken(*args: object, **kwargs: object) -> str | None:
        raise RuntimeError("check failed mid-slot")

    monkeypatch.setattr(stream_verify, "_passthrough_digest_problem", broken)
    with pytest.raises(RuntimeError, match="mid-slot"):
        verify_pack(pack, progress=False, workers=1)


def test_chunk_feed_reads_across_chunks_in_order() -> None:
    feed = stream_verify._ChunkFeed()
    payload = bytes(range(256)) * 40
    chunks = [payload[i : i + 700] for i in range(0, len(payload), 700)]
    out = bytearray()

    import threading

    def produce() -> None:
        for chunk in chunks:
            buffer = feed.free.get()
            buffer[: len(chunk)] = chunk
            feed.full.put((buffer, memoryview(buffer)[: len(chunk)]))
        feed.full.put(None)

    producer = threading.Thread(target=produce)
    producer.start()
    for n in [1, 699, 701, 1500, 3, 10_000]:
        out += feed.read(n)
    producer.join()
    assert bytes(out) == payload
    assert len(feed.read(5)) == 0
