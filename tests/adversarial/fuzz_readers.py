"""Fuzzing harness for the readers of untrusted input: manifest, bundle, safetensors header, token file.

Each reader gets valid seed documents, mutated by byte flips, insertions,
deletions, splices and JSON-aware edits (numbers swapped for NaN, huge or
negative values, keys duplicated, nesting thousands deep, strings swapped for
other types). A reader may accept the input or refuse it with its typed error
(a ``UcError``, or ``SafetensorsFormatError`` from the bare safetensors parser);
any other exception, a hang or a traceback is a finding.

Standalone:

    PYTHONPATH=tests .venv/bin/python tests/adversarial/fuzz_readers.py --iterations 20000 [--seed N] [--reader manifest]

It builds a small signed delivery in a temporary directory for its seeds (or reads one laid out as
``support.delivery.build_delivery`` writes it: ``--delivery DIR``), and
prints per reader how many inputs were accepted, refused and crashed; it exits
1 when anything crashed and writes each crashing input under --crash-dir.
tests/adversarial/test_adv_parsers.py runs it with a few hundred iterations.
"""

from __future__ import annotations

import argparse
import json
import random
import struct
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

READERS = ("manifest", "bundle", "safetensors", "tokens")


# --------------------------------------------------------------------------- mutators


def _json_edit(data: bytes, rng: random.Random) -> bytes:
    """A structure-aware edit of a JSON document (falls back to a byte flip when it does not parse)."""
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        return _flip(data, rng)
    paths: list[tuple[Any, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for k in list(node):
                paths.append((node, k))
                walk(node[k])
        elif isinstance(node, list):
            for i in range(len(node)):
                paths.append((node, i))
                walk(node[i])

    walk(doc)
    if not paths:
        return _flip(data, rng)
    parent, key = rng.choice(paths)
    choice = rng.randrange(10)
    if choice == 0:
        parent[key] = float("nan")
    elif choice == 1:
        parent[key] = rng.choice([2**64, -1, 2**31, 1e308, -0.0, 10**400])
    elif choice == 2:
        parent[key] = rng.choice([None, True, "", "x" * 1000, [], {}, "../../etc/passwd", "/abs", "a\\b"])
    elif choice == 3:
        depth = rng.choice([65, 1000, 5000])
        parent[key] = json.loads("[" * depth + "]" * depth) if depth < 900 else None
        if depth >= 900:  # too deep for json.dumps: splice text in directly
            text = json.dumps(doc).encode()
            return text.replace(b"null", b"[" * depth + b"]" * depth, 1) if b"null" in text else b"[" * depth + text + b"]" * depth
    elif choice == 4 and isinstance(parent, dict):
        text = json.dumps(doc)
        k = json.dumps(key)
        at = text.find(k + ":")
        if at >= 0:  # duplicate the key inside the same object
            return (text[:at] + k + ": 0, " + text[at:]).encode()
    elif choice == 5 and isinstance(parent, list):
        del parent[key]
    elif choice == 6 and isinstance(parent, dict):
        del parent[key]
    elif choice == 7 and isinstance(parent, dict):
        parent["unexpected_" + str(rng.randrange(100))] = 1
    elif choice == 8:
        value = parent[key]
        if isinstance(value, str):
            parent[key] = value + rng.choice(["\x00", "\u202e", "é", " "])
        elif isinstance(value, int) and not isinstance(value, bool):
            parent[key] = value + rng.choice([-1, 1, 7, -(2**40)])
        else:
            parent[key] = str(value)
    else:
        value = parent[key]
        parent[key] = [value, value] if not isinstance(value, list) else value * 2
    try:
        return json.dumps(doc, allow_nan=True).encode()
    except (ValueError, RecursionError):
        return _flip(data, rng)


def _flip(data: bytes, rng: random.Random) -> bytes:
    if not data:
        return bytes([rng.randrange(256)])
    out = bytearray(data)
    for _ in range(rng.choice([1, 1, 1, 2, 4, 16])):
        out[rng.randrange(len(out))] ^= rng.randrange(1, 256)
    return bytes(out)


def _insert(data: bytes, rng: random.Random) -> bytes:
    at = rng.randrange(len(data) + 1)
    return data[:at] + bytes(rng.randrange(256) for _ in range(rng.randint(1, 32))) + data[at:]


def _delete(data: bytes, rng: random.Random) -> bytes:
    if len(data) < 2:
        return b""
    a = rng.randrange(len(data))
    b = min(len(data), a + rng.randint(1, 64))
    return data[:a] + data[b:]


def _truncate(data: bytes, rng: random.Random) -> bytes:
    return data[: rng.randrange(len(data) + 1)]


def _splice(data: bytes, rng: random.Random, other: bytes) -> bytes:
    a = rng.randrange(len(data) + 1)
    b = rng.randrange(len(other) + 1)
    return data[:a] + other[b:]


def _header_edit(data: bytes, rng: random.Random) -> bytes:
    """safetensors: rewrite the header length, or the header JSON, keeping the framing valid or not."""
    import struct

    if len(data) < 8:
        return _flip(data, rng)
    (n,) = struct.unpack("<Q", data[:8])
    header, body = data[8 : 8 + n], data[8 + n :]
    choice = rng.randrange(4)
    if choice == 0:
        length = rng.choice([0, 1, n - 1, n + 1, len(data), 2**63, 2**64 - 1, 100 * 1024 * 1024 + 1])
        return struct.pack("<Q", max(0, min(length, 2**64 - 1))) + data[8:]
    if choice == 1:
        new = _json_edit(header, rng)
        return struct.pack("<Q", len(new)) + new + body
    if choice == 2:  # offsets of one tensor moved, overlapping or out of range
        try:
            doc = json.loads(header)
        except (ValueError, RecursionError):
            return _flip(data, rng)
        names = [k for k in doc if k != "__metadata__"] if isinstance(doc, dict) else []
        if not names or not isinstance(doc[names[0]], dict) or "data_offsets" not in doc[names[0]]:
            return _flip(data, rng)
        info = doc[names[0] if len(names) == 1 else rng.choice(names)]
        if not isinstance(info, dict) or not isinstance(info.get("data_offsets"), list) or len(info["data_offsets"]) != 2:
            return _flip(data, rng)
        s, e = info["data_offsets"]
        if not all(isinstance(v, int) for v in (s, e)):
            return _flip(data, rng)
        info["data_offsets"] = rng.choice([[s, e + 1], [s - 1, e - 1], [0, e - s], [s, len(body) + 8], [e, s], [-8, e]])
        new = json.dumps(doc).encode()
        return struct.pack("<Q", len(new)) + new + body
    try:
        doc = json.loads(header)
    except (ValueError, RecursionError):
        return _flip(data, rng)
    if not isinstance(doc, dict):
        return _flip(data, rng)
    names = [k for k in doc if k != "__metadata__"]
    if names and isinstance(doc[names[0]], dict):
        info = doc[names[0]]
        info[rng.choice(["dtype", "shape"])] = rng.choice(["F4", "C64", "bf16", "U1", [2**40, 2**40], [-1], [True], "F16", [0]])
    new = json.dumps(doc).encode()
    return struct.pack("<Q", len(new)) + new + body


def mutate(data: bytes, rng: random.Random, others: list[bytes], safetensors: bool = False) -> bytes:
    ops: list[Callable[[bytes, random.Random], bytes]] = [_flip, _insert, _delete, _truncate]
    if safetensors:
        ops += [_header_edit, _header_edit, _header_edit]
    else:
        ops += [_json_edit, _json_edit, _json_edit]
    out = data
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        if others and rng.random() < 0.1:
            out = _splice(out, rng, rng.choice(others))
        else:
            op = rng.choice(ops)
            try:
                out = op(out, rng)
            except (ValueError, TypeError, KeyError, IndexError, OverflowError, RecursionError, struct.error):
                out = _flip(out, rng)  # a mutator that cannot apply to this input (the harness, not the reader)
    return out


# --------------------------------------------------------------------------- readers under test


@dataclass
class Seeds:
    """Valid documents to mutate, and what the readers need (a pack directory, the public key)."""

    workdir: Path
    manifest: bytes
    bundle: bytes
    shards: list[bytes]
    tokens: bytes
    pack: Path
    public_key: Path
    signed_payload: bytes = b""


def allowed_errors() -> tuple[type[BaseException], ...]:
    from uc_attest._internal.errors import UcError
    from uc_attest._internal.pack.safetensors_strict import SafetensorsFormatError

    return (UcError, SafetensorsFormatError)


def read_manifest(data: bytes, seeds: Seeds) -> Any:
    """open_pack over a copy of the pack whose ucpack.json holds ``data``, then ``uc verify``'s walk of it."""
    from uc_attest._internal.pack.reader import open_pack
    from uc_attest._internal.pack.verify import verify_pack

    target = seeds.workdir / "fuzz-pack"
    (target / "ucpack.json").write_bytes(data)
    open_pack(target)
    return verify_pack(target, progress=False, workers=1)


def read_bundle(data: bytes, seeds: Seeds) -> Any:
    from uc_attest._internal.attest import KeyAnchor, verify_bundle

    verified = verify_bundle(data, KeyAnchor(seeds.public_key))
    if verified.payload != seeds.signed_payload:  # accepted must mean: exactly what the vendor signed
        raise AssertionError("a mutated bundle verified with a payload the vendor did not sign")
    return verified


def read_safetensors(data: bytes, seeds: Seeds) -> Any:
    from uc_attest._internal.pack.decode import slot_tensor
    from uc_attest._internal.pack.safetensors_strict import parse_safetensors

    view = parse_safetensors(data, "fuzz.safetensors")
    for name in view.tensors:  # materialising every tensor must not fail differently
        slot_tensor(view, name)
    return view


def read_tokens(data: bytes, seeds: Seeds) -> Any:
    from uc_attest._internal.evaluate.tokens import load_token_file

    path = seeds.workdir / "fuzz.eval-tokens.safetensors"
    path.write_bytes(data)
    return load_token_file(path)


def readers(seeds: Seeds) -> dict[str, tuple[Callable[[bytes, Seeds], Any], list[bytes], bool]]:
    return {
        "manifest": (read_manifest, [seeds.manifest], False),
        "bundle": (read_bundle, [seeds.bundle], False),
        "safetensors": (read_safetensors, [*seeds.shards, seeds.tokens], True),
        "tokens": (read_tokens, [seeds.tokens], True),
    }


def make_seeds(workdir: Path, delivery_dir: Path | None = None) -> Seeds:
    """Seeds from the signed delivery in ``delivery_dir``, or from a small one built in ``workdir``."""
    import shutil

    from support.delivery import build_delivery, delivery_at

    from uc_attest._internal.attest import KeyAnchor, verify_bundle

    delivery = delivery_at(delivery_dir) if delivery_dir is not None else build_delivery(workdir / "delivery", seed=3)[0]
    fuzz_pack = workdir / "fuzz-pack"
    shutil.copytree(delivery.pack, fuzz_pack)
    shards = [p.read_bytes() for p in sorted(delivery.pack.glob("*.safetensors"))]
    return Seeds(workdir=workdir, manifest=(delivery.pack / "ucpack.json").read_bytes(), bundle=delivery.bundle.read_bytes(),
                 shards=shards, tokens=delivery.tokens.read_bytes(), pack=fuzz_pack, public_key=delivery.key,
                 signed_payload=verify_bundle(delivery.bundle.read_bytes(), KeyAnchor(delivery.key)).payload)  # fmt: skip


@dataclass
class FuzzStats:
    accepted: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    crashed: Counter[str] = field(default_factory=Counter)
    crashes: list[tuple[str, bytes, str]] = field(default_factory=list)
    slowest: dict[str, float] = field(default_factory=dict)


def fuzz(seeds: Seeds, iterations: int, seed: int, only: list[str] | None = None, time_limit_s: float = 5.0) -> FuzzStats:
    """``iterations`` mutated inputs per reader; any exception outside the allowed typed errors is a crash."""
    rng = random.Random(seed)
    allowed = allowed_errors()
    stats = FuzzStats()
    for name, (reader, corpus, is_st) in readers(seeds).items():
        if only and name not in only:
            continue
        others = [c for c in corpus]
        for _ in range(iterations):
            data = mutate(rng.choice(corpus), rng, others, safetensors=is_st)
            t0 = time.perf_counter()
            try:
                reader(data, seeds)
                stats.accepted[name] += 1
            except allowed:
                stats.refused[name] += 1
            except RecursionError as exc:
                stats.crashed[name] += 1
                stats.crashes.append((name, data, f"RecursionError: {exc}"))
            except Exception:  # noqa: BLE001 - the point: anything untyped is a finding
                stats.crashed[name] += 1
                stats.crashes.append((name, data, traceback.format_exc(limit=4)))
            dt = time.perf_counter() - t0
            stats.slowest[name] = max(stats.slowest.get(name, 0.0), dt)
            if dt > time_limit_s:
                stats.crashed[name] += 1
                stats.crashes.append((name, data, f"took {dt:.1f}s (limit {time_limit_s}s)"))
    return stats


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Fuzz the manifest, bundle, safetensors and token-file readers.")
    ap.add_argument("--iterations", type=int, default=2000, help="inputs per reader")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--reader", action="append", choices=READERS, help="only this reader (repeatable)")
    ap.add_argument("--crash-dir", type=Path, default=Path("build/fuzz-crashes"))
    ap.add_argument("--delivery", type=Path, help="seed from this signed delivery (as support.delivery lays it out) instead of building one")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="uc-fuzz-") as tmp:
        seeds = make_seeds(Path(tmp), args.delivery)
        start = time.perf_counter()
        stats = fuzz(seeds, args.iterations, args.seed, args.reader)
        seconds = time.perf_counter() - start
    print("| reader | inputs | accepted | refused (typed error) | crashed | slowest (s) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in READERS:
        n = stats.accepted[name] + stats.refused[name] + stats.crashed[name]
        if n:
            print(f"| {name} | {n} | {stats.accepted[name]} | {stats.refused[name]} | {stats.crashed[name]} | {stats.slowest[name]:.3f} |")
    print(f"{seconds:.1f}s")
    if stats.crashes:
        args.crash_dir.mkdir(parents=True, exist_ok=True)
        for i, (name, data, tb) in enumerate(stats.crashes[:100]):
            (args.crash_dir / f"{name}-{i:03d}.bin").write_bytes(data)
            (args.crash_dir / f"{name}-{i:03d}.txt").write_text(tb)
        print(f"{len(stats.crashes)} crashes; inputs written to {args.crash_dir}")
        for name, _data, tb in stats.crashes[:5]:
            print(f"--- {name}\n{tb}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
