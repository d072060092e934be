"""Property-based tests of the parsers of untrusted input, and a short run of the fuzzing harness.

Every parser must either return a value or raise its typed error (a UcError,
or SafetensorsFormatError from the bare safetensors parser): never another
exception, never a hang. Valid input must round-trip.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import struct
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from uc_attest._internal.errors import UcError
from uc_attest._internal.pack.decode import slot_tensor
from uc_attest._internal.pack.safetensors_strict import DTYPE_SIZES, SafetensorsFormatError, parse_safetensors
from uc_attest._internal.pack.strict_json import MAX_DEPTH, dumps_canonical, loads_strict

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

json_scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20)
json_values = st.recursive(json_scalars, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4), max_leaves=20)


# --------------------------------------------------------------------------- strict JSON


@FAST
@given(json_values)
def test_strict_json_round_trips_valid_documents(value: Any) -> None:
    assert loads_strict(dumps_canonical(value), "doc") == value


@FAST
@given(st.binary(max_size=300))
def test_strict_json_never_raises_anything_but_its_typed_error(data: bytes) -> None:
    try:
        value = loads_strict(data, "doc")
    except UcError:
        return
    assert loads_strict(dumps_canonical(value), "doc") == value  # what is accepted has one meaning: it writes and reads back the same


@FAST
@given(st.text(alphabet='[]{}":,0123456789aeflnrstu \\', max_size=200))
def test_strict_json_on_json_like_text(text: str) -> None:
    try:
        value = loads_strict(text, "doc")
    except UcError:
        return
    assert loads_strict(dumps_canonical(value), "doc") == value


@pytest.mark.parametrize("number", ["1e400", "-1e400", "[1, 2e308]", '{"a": 1.8e308}'])
def test_strict_json_refuses_a_number_that_overflows_to_infinity(number: str) -> None:
    """Forgery: Infinity spelled as a number too large for a float; refused like NaN and Infinity themselves."""
    with pytest.raises(UcError, match="out of the float range"):
        loads_strict(number, "doc")


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 1000, 100_000])
@pytest.mark.parametrize("brackets", ["[]", "{}"])
def test_json_nested_thousands_deep_is_refused(depth: int, brackets: str) -> None:
    if brackets == "[]":
        text = "[" * depth + "]" * depth
    else:
        text = '{"a":' * depth + "1" + "}" * depth
    with pytest.raises(UcError, match="nested deeper"):
        loads_strict(text, "doc")


@pytest.mark.parametrize(
    "text",
    ['{"a": 1, "a": 2}', '{"x": {"b": 1, "b": 1}}', '[NaN]', '{"v": Infinity}', '{"v": -Infinity}', "\xff", '{"a": 1} x'],
)
def test_duplicate_keys_nan_and_garbage_are_refused(text: str) -> None:
    with pytest.raises(UcError):
        loads_strict(text.encode("latin-1") if text == "\xff" else text, "doc")


# --------------------------------------------------------------------------- safetensors

DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "U8": torch.uint8, "I64": torch.int64, "I32": torch.int32}


@st.composite
def tensor_dicts(draw: Any) -> dict[str, torch.Tensor]:
    names = draw(st.lists(st.text(alphabet="abcdefgh._0123", min_size=1, max_size=12), min_size=0, max_size=4, unique=True))
    out = {}
    for name in names:
        dtype = DTYPES[draw(st.sampled_from(sorted(DTYPES)))]
        shape = draw(st.lists(st.integers(0, 5), min_size=0, max_size=3))
        n = math.prod(shape)
        out[name] = (torch.arange(n, dtype=torch.float64) * 0.37).to(dtype).reshape(shape)
    return out


@FAST
@given(tensor_dicts())
def test_safetensors_round_trip_matches_the_reference_library(tensors: dict[str, torch.Tensor]) -> None:
    data = st_save(tensors) if tensors else st_save({})
    view = parse_safetensors(data, "t")
    reference = st_load(data)
    assert set(view.tensors) == set(reference)
    for name, ref in reference.items():
        assert torch.equal(slot_tensor(view, name), ref)


@FAST
@given(tensor_dicts(), st.data())
def test_safetensors_mutated_files_raise_only_the_format_error(tensors: dict[str, torch.Tensor], data: Any) -> None:
    raw = bytearray(st_save(tensors))
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(raw) - 1))
        raw[at] ^= data.draw(st.integers(1, 255))
    try:
        view = parse_safetensors(bytes(raw), "t")
        rebuilt = {name: slot_tensor(view, name) for name in view.tensors}
    except SafetensorsFormatError:
        return
    for name, tensor in rebuilt.items():  # accepted: every tensor has exactly the shape and byte size its header declares
        slot = view.tensors[name]
        assert tuple(tensor.shape) == tuple(slot.shape) and tensor.numel() * tensor.element_size() == slot.end - slot.start


@FAST
@given(st.binary(max_size=200))
def test_safetensors_arbitrary_bytes_raise_only_the_format_error(raw: bytes) -> None:
    try:
        view = parse_safetensors(raw, "t")
    except SafetensorsFormatError:
        return
    assert all(0 <= slot.start <= slot.end <= len(view.buffer) for slot in view.tensors.values())  # accepted: slots lie inside the data


def _file(header: dict[str, Any], body: bytes = b"\0" * 16, header_len: int | None = None) -> bytes:
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h) if header_len is None else header_len) + h + body


def _t(dtype: str = "F32", shape: list[int] | None = None, offsets: list[int] | None = None) -> dict[str, Any]:
    return {"dtype": dtype, "shape": [4] if shape is None else shape, "data_offsets": [0, 16] if offsets is None else offsets}


MALFORMED = {
    "header length 2**64-1": _file({"a": _t()}, header_len=2**64 - 1),
    "header length beyond the file": _file({"a": _t()}, header_len=10_000),
    "header length over 100 MiB": _file({"a": _t()}, header_len=100 * 1024 * 1024 + 1),
    "file shorter than 8 bytes": b"\x01\x00",
    "overlapping offsets": _file({"a": _t(offsets=[0, 16]), "b": _t(offsets=[8, 24])}, b"\0" * 24),
    "offsets out of range": _file({"a": _t(offsets=[0, 32])}),
    "offsets reversed": _file({"a": _t(offsets=[16, 0])}),
    "negative offset": _file({"a": _t(offsets=[-16, 0])}),
    "offsets not integers": _file({"a": _t(offsets=[0.0, 16.0])}),
    "offsets are booleans": _file({"a": {"dtype": "U8", "shape": [1], "data_offsets": [False, True]}}, b"\0"),
    "hole between tensors": _file({"a": _t(shape=[2], offsets=[0, 8]), "b": _t(shape=[1], offsets=[12, 16])}),
    "trailing bytes": _file({"a": _t()}, b"\0" * 20),
    "unknown dtype": _file({"a": _t(dtype="F4")}),
    "dtype not a string": _file({"a": _t(dtype=["F32"])}),  # type: ignore[arg-type]
    "dtype an object": _file({"a": {"dtype": {"x": 1}, "shape": [4], "data_offsets": [0, 16]}}),
    "shape does not match bytes": _file({"a": _t(shape=[5])}),
    "negative dimension": _file({"a": _t(shape=[-4])}),
    "huge dimensions": _file({"a": _t(shape=[2**40, 2**40])}),
    "shape not a list": _file({"a": _t(shape=4)}),  # type: ignore[arg-type]
    "extra field": _file({"a": {**_t(), "x": 1}}),
    "duplicate tensor name": b"",  # built below
    "metadata not a string map": _file({"__metadata__": {"a": 1}, "a": _t()}),
    "header not an object": _file([1, 2], b""),  # type: ignore[arg-type]
    "header NaN": b"",  # built below
}


def _raw_header(text: bytes, body: bytes = b"\0" * 16) -> bytes:
    return struct.pack("<Q", len(text)) + text + body


MALFORMED["duplicate tensor name"] = _raw_header(b'{"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}, "a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}')
MALFORMED["header NaN"] = _raw_header(b'{"a": {"dtype": "F32", "shape": [NaN], "data_offsets": [0, 16]}}')
MALFORMED["header nested thousands deep"] = _raw_header(b'{"__metadata__": ' + b"[" * 5000 + b"]" * 5000 + b"}", b"")


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_safetensors_is_refused_with_the_format_error(name: str) -> None:
    with pytest.raises(SafetensorsFormatError):
        parse_safetensors(MALFORMED[name], name)


def test_every_known_dtype_has_a_size() -> None:
    assert all(DTYPE_SIZES[d] in (1, 2, 4, 8) for d in DTYPE_SIZES)


# --------------------------------------------------------------------------- manifest, bundle, token file


@functools.cache
def _genuine_tensor_digests(pack: Path) -> dict[str, str]:
    from uc_attest._internal.pack.verify import verify_pack

    verified = verify_pack(pack, progress=False, workers=1)
    assert verified.report.ok, verified.report.failures
    return verified.tensor_digests()


@pytest.fixture(scope="module")
def seeds(delivery_root: tuple[Path, Any], tmp_path_factory: pytest.TempPathFactory) -> Any:
    from fuzz_readers import make_seeds

    return make_seeds(tmp_path_factory.mktemp("fuzz"), delivery_root[0])


def _read_mutated(data: Any, seeds: Any, seed_doc: bytes, reader: Any, safetensors: bool = False) -> tuple[bytes, Any]:
    """One drawn mutation of ``seed_doc`` and what ``reader`` made of it: None where it refused with a typed error
    (any other exception fails the test)."""
    import random

    from fuzz_readers import mutate

    doc = mutate(seed_doc, random.Random(data.draw(st.integers(0, 2**32))), [], safetensors=safetensors)
    try:
        return doc, reader(doc, seeds)
    except UcError:
        return doc, None


@pytest.mark.slow
@FAST
@given(st.data())
def test_manifest_reader_with_json_aware_mutations(seeds: Any, data: Any) -> None:
    from fuzz_readers import read_manifest

    _, verified = _read_mutated(data, seeds, seeds.manifest, read_manifest)
    if verified is None:
        return
    # Read without a refusal: the report must say ok exactly when it lists no failure, and a pack that passes
    # under a rewritten manifest rebuilds every tensor to the digest the genuine manifest records (shards unchanged).
    assert verified.report.ok == (verified.report.failures == [])
    if verified.report.ok:
        assert verified.tensor_digests() == _genuine_tensor_digests(seeds.pack)


@pytest.mark.slow
@FAST
@given(st.data())
def test_bundle_reader_with_json_aware_mutations(seeds: Any, data: Any) -> None:
    from fuzz_readers import read_bundle

    from uc_attest._internal.attest import KeyAnchor, verify_bundle

    _, verified = _read_mutated(data, seeds, seeds.bundle, read_bundle)
    if verified is not None:  # accepted only if it says exactly what the vendor signed
        assert verified.payload == verify_bundle(seeds.bundle, KeyAnchor(seeds.public_key)).payload


@pytest.mark.slow
@FAST
@given(st.data())
def test_token_file_reader_with_header_mutations(seeds: Any, data: Any) -> None:
    from fuzz_readers import read_tokens

    mutated, read = _read_mutated(data, seeds, seeds.tokens, read_tokens, safetensors=True)
    if read is None:
        return
    ids, metadata, digest = read
    # Accepted: the digest the check compares with the signed one is the digest of exactly the bytes parsed.
    assert digest == hashlib.sha256(mutated).hexdigest()
    assert ids.dtype == torch.int64 and ids.ndim == 1
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())


@pytest.mark.slow
def test_fuzz_harness_short_run_finds_no_crash(seeds: Any) -> None:
    from fuzz_readers import fuzz

    stats = fuzz(seeds, iterations=250, seed=11)
    assert not stats.crashes, stats.crashes[0][2]
    for reader in ("manifest", "bundle", "safetensors", "tokens"):
        assert stats.refused[reader] > 0  # the mutations do reach the readers' checks


@pytest.mark.slow
def test_fuzz_harness_runs_standalone(delivery_root: tuple[Path, Any], tmp_path: Path) -> None:
    import subprocess
    import sys

    from support.paths import child_env

    script = Path(__file__).with_name("fuzz_readers.py")
    proc = subprocess.run([sys.executable, str(script), "--iterations", "20", "--reader", "safetensors", "--crash-dir", str(tmp_path),
                           "--delivery", str(delivery_root[0])], capture_output=True, text=True, timeout=300, env=child_env())  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "| safetensors | 20 |" in proc.stdout
