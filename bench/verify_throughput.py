"""How close does ``uc verify`` come to the machine's own limits?

Builds (or reuses) a pack with at least 1 GB of reconstructed weights from a
random Llama-shaped model (10 decoder layers, 540M parameters; ``--layers``
makes a deeper one, 43 layers for 2B parameters and about 4 GB of weights, where the
command's fixed start-up weighs less, as it does for a 70B pack), then measures
in one run:
  - the single-core SHA-256 rate of hashlib on an in-memory buffer,
  - the rate of reading the pack's files,
  - the wall time of ``uc verify`` (the command, interpreter start-up included) and
    of the in-process ``verify_pack`` call (median of three runs each), with the
    command's start-up alone, ``uc verify --architecture`` once, and the peak
    resident memory of the command.
Prints bytes hashed, the floor = max(bytes hashed / (cores x single-core rate),
read time) and the ratio of verify's time to that floor.

    python bench/verify_throughput.py [--work build/bench] [--layers 10] [--workers N]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def build_model(target: Path, layers: int = 10) -> Path:
    """A random bf16 Llama-shaped model (hidden 2048, 45M parameters per layer plus 65M of embeddings), written in shards."""
    if (target / "config.json").is_file():
        return target
    import transformers
    from safetensors.torch import save_file

    from uc_attest._internal.architecture import build_skeleton

    config = transformers.LlamaConfig(vocab_size=32000, hidden_size=2048, intermediate_size=5632,
                                      num_hidden_layers=layers, num_attention_heads=16, num_key_value_heads=4,
                                      tie_word_embeddings=True)  # fmt: skip
    skeleton = build_skeleton(config)
    tmp = target.with_name(target.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(0)
    shard: dict[str, torch.Tensor] = {}
    index: dict[str, str] = {}
    n = 0
    for name, param in skeleton.state_dict().items():
        shard[name] = (torch.randn(param.shape, generator=gen) * 0.02).to(torch.bfloat16)
        if sum(t.numel() for t in shard.values()) > 200_000_000:
            n += 1
            save_file(shard, str(tmp / f"model-{n:05d}.safetensors"))
            index.update({k: f"model-{n:05d}.safetensors" for k in shard})
            shard = {}
    n += 1
    save_file(shard, str(tmp / f"model-{n:05d}.safetensors"))
    index.update({k: f"model-{n:05d}.safetensors" for k in shard})
    (tmp / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": index}))
    config.save_pretrained(str(tmp))
    tmp.rename(target)
    return target


def build_pack(model: Path, pack: Path) -> Path:
    if (pack / "ucpack.json").is_file():
        return pack
    from uc_attest._internal.compress.options import CompressOptions
    from uc_attest._internal.compress.pipeline import compress_model

    compress_model(model, pack, CompressOptions(method="datafree"), progress=True)
    return pack


def sha256_rate() -> float:
    buf = os.urandom(256 * 1024 * 1024)
    hashlib.sha256(buf[: 1 << 20]).digest()
    start = time.perf_counter()
    hashlib.sha256(buf).digest()
    return len(buf) / (time.perf_counter() - start)


def sha256_rate_all_cores(cores: int) -> float:
    """Aggregate rate of one hashing thread per core, in the same process (hashlib releases the GIL).

    Context for the floor, which assumes cores x the single-core rate: with every
    core busy, clocks and shared caches give somewhat less than that.
    """
    import threading

    buf = os.urandom(128 * 1024 * 1024)
    threads = [threading.Thread(target=lambda: hashlib.sha256(buf).digest()) for _ in range(cores)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return cores * len(buf) / (time.perf_counter() - start)


def read_time(pack: Path) -> tuple[int, float]:
    total = 0
    start = time.perf_counter()
    for path in sorted(pack.iterdir()):
        with open(path, "rb", buffering=0) as handle:
            while chunk := handle.read(16 << 20):
                total += len(chunk)
    return total, time.perf_counter() - start


REPEATS = 3


def _timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def _run_passing(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.splitlines()[-1] == "VERIFY: PASS", proc.stdout + proc.stderr


def _peak_rss_mb(cli: list[str]) -> float:
    """Peak resident memory of the command, reported by the child itself (RUSAGE_CHILDREN would include the compressor)."""
    child = ("import resource, sys\ntry:\n    from uc_attest._internal.cli.uc import main\n    main()\nfinally:\n"
             "    sys.stderr.write('PEAK_KB %d\\n' % resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n")
    proc = subprocess.run([cli[0], "-c", child, *cli[3:]], capture_output=True, text=True)
    assert proc.stdout.splitlines()[-1] == "VERIFY: PASS", proc.stdout + proc.stderr
    return int(next(line.split()[1] for line in proc.stderr.splitlines() if line.startswith("PEAK_KB"))) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default=str(ROOT / "build" / "bench"))
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--layers", type=int, default=10, help="decoder layers of the random model (10: 540M parameters)")
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    name = "random-llama-540m" if args.layers == 10 else f"random-llama-{args.layers}-layers"
    pack = build_pack(build_model(work / name, args.layers), work / f"{name}.ucpack")

    from uc_attest._internal.pack.reader import open_pack
    from uc_attest._internal.pack.verify import verify_pack

    manifest = open_pack(pack).manifest
    reconstructed = 0
    for t in manifest.tensors:
        numel = 1
        for d in t.shape:
            numel *= d
        reconstructed += numel * (2 if t.dtype in ("bfloat16", "float16") else 4)
    file_bytes = sum(f.size for f in manifest.files) + (pack / "ucpack.json").stat().st_size
    hashed = file_bytes + reconstructed
    cores = os.cpu_count() or 1
    rate = sha256_rate()
    rate_all = statistics.median(sha256_rate_all_cores(cores) for _ in range(REPEATS))
    read_time(pack)  # warm the page cache, as it is for the verify runs below
    nread, tread = read_time(pack)
    floor = max(hashed / (cores * rate), tread)

    verify_pack(pack, progress=False, workers=args.workers)  # warm the page cache and imports
    t_inproc = statistics.median(_timed(lambda: verify_pack(pack, progress=False, workers=args.workers)) for _ in range(REPEATS))

    cli = [sys.executable, "-c", "from uc_attest._internal.cli.uc import main; main()", "verify", str(pack), "--quiet"]
    if args.workers:
        cli += ["--workers", str(args.workers)]
    t_cli = statistics.median(_timed(lambda: _run_passing(cli)) for _ in range(REPEATS))
    t_arch = _timed(lambda: _run_passing([*cli, "--architecture"]))
    peak_mb = _peak_rss_mb(cli)
    # the command's fixed cost: a fresh interpreter that imports what `uc verify` imports, and stops
    t_import = statistics.median(
        _timed(lambda: subprocess.run([sys.executable, "-c", "import uc_attest._internal.cli.uc, uc_attest._internal.pack.verify"], check=True))
        for _ in range(REPEATS))  # fmt: skip

    rows = [
        ("pack", f"{pack.name} ({manifest.stats.quantized_params + manifest.stats.passthrough_params:,} parameters)"),
        ("cores", f"{cores}"),
        ("pack files", f"{file_bytes / 1e9:.3f} GB"),
        ("reconstructed weights", f"{reconstructed / 1e9:.3f} GB"),
        ("bytes hashed", f"{hashed / 1e9:.3f} GB"),
        ("sha256 single core", f"{rate / 1e9:.3f} GB/s"),
        ("sha256 all cores at once", f"{rate_all / 1e9:.3f} GB/s ({rate_all / rate:.2f}x one core; hashing alone at this rate: "
                                     f"{hashed / rate_all:.3f} s = {hashed / rate_all / floor:.2f}x the floor)"),
        ("read rate (page cache)", f"{nread / tread / 1e9:.3f} GB/s ({tread:.3f} s)"),
        ("floor", f"{floor:.3f} s"),
        ("verify_pack in-process", f"{t_inproc:.3f} s  ratio {t_inproc / floor:.2f}x"),
        ("uc verify (command)", f"{t_cli:.3f} s  ratio {t_cli / floor:.2f}x"),
        ("  of which start-up", f"{t_import:.3f} s (fresh interpreter and the command's imports)"),
        ("uc verify --architecture", f"{t_arch:.3f} s  ratio {t_arch / floor:.2f}x (adds transformers and the model skeleton)"),
        ("uc verify peak RSS", f"{peak_mb:.0f} MB"),
        ("timings", f"median of {REPEATS} runs each (--architecture: one run)"),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")


if __name__ == "__main__":
    main()
