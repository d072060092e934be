"""The whole flow at a billion parameters, measured: TinyLlama-1.1B's shape with random weights.

Builds, from a transformers config and nothing downloaded, a random bf16
model of TinyLlama-1.1B's shape (22 decoder blocks, hidden 2048, MLP 5632,
32 query / 4 key-value heads, vocabulary 32000, untied head; 1.1 B
parameters), tensor by tensor into safetensors shards (one shard in memory at
a time), plus one of the same shape with 6 blocks. On each it runs the real
commands, each in a fresh child process:

  uc compress --method datafree        attest sign --baseline   (key-signed)
  uc compress (calibrated, small sample) attest check --policy strict
  uc verify                            uc export, then uc verify --deployed

and records per step: wall time, CPU time (user + system, of the command and
its children: on a shared machine the figure that load does not inflate), peak resident memory of the command
(VmHWM of exactly that command's process, read by itself as it exits), the bytes it read and wrote
through system calls (/proc/PID/io rchar/wchar, read by the child itself as it
exits; reads through mmap, as safetensors does, are not system calls and are
not counted), and time per decoder block (wall / blocks, and the marginal
(t22 - t6) / 16 that leaves out the fixed costs). Then the depth ratios
(22/6 blocks) of peak memory for compress, sign and check.

The weights are random, so the perplexities are meaningless: this measures
cost, not quality. Sign and check evaluate few windows (--max-windows) so that
the run ends; the evaluation's cost grows linearly with windows.

    nice -n 5 python bench/scale_1b.py [--work build/scale1b] [--models DIR] [--depths 6,22]
        [--calibrated-depths 1,6] [--steps datafree,verify,sign,check,export,deployed,calibrated]
        [--samples 8] [--max-windows 2]

e.g. only the data-free compression's memory at 1 and 6 blocks, on prepared models:

    nice -n 5 python bench/scale_1b.py --models /work/keep/scale1b --depths 1,6 --steps datafree

Writes build/scale1b/scale_1b.json and scale_1b.md (a markdown table).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from measured_child import run_measured  # noqa: E402

SHAPE = {"vocab_size": 32000, "hidden_size": 2048, "intermediate_size": 5632, "num_attention_heads": 32,
         "num_key_value_heads": 4, "max_position_embeddings": 2048, "tie_word_embeddings": False}  # fmt: skip
# --steps names -> the step labels of the table
STEP_NAMES = {"compress datafree": "datafree", "verify": "verify", "sign --baseline": "sign", "check --policy strict": "check",
              "export": "export", "verify --deployed": "deployed", "compress calibrated": "calibrated"}  # fmt: skip
SHARD_PARAMS = 250_000_000  # parameters per written shard (500 MB of bf16)

# The child runs the command's own entry point and, however it ends, reports its I/O counters and peak RSS.
CHILD = """import json, os, resource, sys
group, stats = sys.argv[1], sys.argv[2]
sys.argv = [group] + sys.argv[3:]
try:
    if group == "uc":
        from uc_attest._internal.cli.uc import main
    else:
        from uc_attest._internal.cli.attest import main
    main()
finally:
    io = dict(line.split(": ") for line in open("/proc/self/io").read().splitlines())
    status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines())
    with open(stats, "w") as out:
        json.dump({"rchar": int(io["rchar"]), "wchar": int(io["wchar"]), "read_bytes": int(io["read_bytes"]),
                   "write_bytes": int(io["write_bytes"]), "vmhwm_kib": int(status["VmHWM"].split()[0]),
                   "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}, out)
"""


def build_model(target: Path, layers: int) -> Path:
    """The random model, written tensor by tensor: at most one shard (SHARD_PARAMS) is held in memory."""
    if (target / "config.json").is_file():
        return target
    import torch
    import transformers
    from safetensors.torch import save_file

    from check_memory import make_tokenizer
    from uc_attest._internal.architecture import build_skeleton

    config = transformers.LlamaConfig(num_hidden_layers=layers, **SHAPE)  # type: ignore[arg-type]
    tmp = target.with_name(target.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(layers)
    shard: dict[str, torch.Tensor] = {}
    index: dict[str, str] = {}

    def flush() -> None:
        name = f"model-{len(set(index.values())) + 1:05d}.safetensors"
        save_file(shard, str(tmp / name), metadata={"format": "pt"})
        index.update(dict.fromkeys(shard, name))
        shard.clear()

    for name, param in build_skeleton(config).state_dict().items():  # meta tensors: shapes only
        if param.ndim == 1:
            shard[name] = torch.ones(param.shape, dtype=torch.bfloat16)  # norms
        else:
            shard[name] = (torch.randn(param.shape, generator=gen) * 0.02).to(torch.bfloat16)
        if sum(t.numel() for t in shard.values()) >= SHARD_PARAMS:
            flush()
    if shard:
        flush()
    (tmp / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": index}, indent=1))
    config.save_pretrained(str(tmp))
    make_tokenizer(tmp, 32000)
    tmp.rename(target)
    return target


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def run_step(label: str, group: str, args: list[str], stats: Path, ok_codes: tuple[int, ...] = (0,)) -> dict[str, object]:
    """One command in a fresh child: wall time, peak RSS, syscall I/O, exit code and last stdout line."""
    cmd = [sys.executable, "-c", CHILD, group, str(stats), *args]
    load_before = load_average()
    child = run_measured(cmd, {**os.environ, "PYTHONPATH": str(ROOT)}, ROOT, stderr_file=stats.with_suffix(".stderr"), no_stdin=True)  # no passphrase prompt
    text, code, seconds, usage = child.output, child.exit_code, child.seconds, child.usage
    io = json.loads(stats.read_text()) if stats.is_file() else {}
    lines = text.strip().splitlines()
    # VmHWM is the peak of the command's own address space; ru_maxrss also counts what the forked child
    # inherited from this (larger) process before exec, so it is only an upper bound for a small command.
    peak_kib = io.get("vmhwm_kib", usage.ru_maxrss)
    row = {"step": label, "seconds": round(seconds, 1), "cpu_s": round(usage.ru_utime + usage.ru_stime, 1), "peak_rss_mib": round(peak_kib / 1024, 1),
           "read_mb": round(io.get("rchar", 0) / 1e6, 1), "written_mb": round(io.get("wchar", 0) / 1e6, 1),
           "exit": code, "last_line": lines[-1] if lines else "", "load_before": load_before, "load_after": load_average()}  # fmt: skip
    print(json.dumps(row), flush=True)
    if code not in ok_codes:
        sys.exit(f"{label} failed ({code}): {lines[-5:]}")
    return row


def flow(work: Path, layers: int, args: argparse.Namespace, calibrated: bool) -> list[dict[str, object]]:
    """The flow on the model of ``layers`` blocks; with ``calibrated``, only the calibrated compression (run last: the costliest).

    Only the steps named in ``args.steps`` run; a step whose input an earlier one makes (the pack, the bundle, the
    export) finds it in the work directory from an earlier run.
    """
    model_path = Path(args.models) / f"tinyllama-shape-{layers}"
    model = model_path if args.report_only else build_model(model_path, layers)
    out = work / f"run-{layers}"
    out.mkdir(exist_ok=True)
    rows: list[dict[str, object]] = []

    def step(label: str, group: str, argv: list[str], **kw: object) -> None:
        stem = out / label.replace(" ", "_")
        kept = stem.with_suffix(".row.json")
        if (args.reuse or args.report_only) and kept.is_file():  # measured by an earlier, interrupted run: its figures stand
            rows.append(json.loads(kept.read_text()))
            return
        if args.report_only or STEP_NAMES[label.split(" (")[0]] not in args.steps:
            return
        row = run_step(label, group, argv, stem.with_suffix(".stats.json"), **kw)  # type: ignore[arg-type]
        row["blocks"] = layers
        row["s_per_block"] = round(float(row["seconds"]) / layers, 2)  # type: ignore[arg-type]
        kept.write_text(json.dumps(row))
        rows.append(row)

    if calibrated:
        step(f"compress calibrated ({args.samples}x{args.calib_seq_len})", "uc",
             ["compress", str(model), "-o", str(out / "calibrated.ucpack"), "--samples", str(args.samples),
              "--seq-len", str(args.calib_seq_len), "--force", "--quiet"])  # fmt: skip
        return rows
    pack = out / "datafree.ucpack"
    step("compress datafree", "uc", ["compress", str(model), "-o", str(pack), "--method", "datafree", "--force", "--quiet"])
    step("verify", "uc", ["verify", str(pack), "--quiet"])
    key = out / "vendor.key"
    if not key.exists() and not args.report_only and "sign" in args.steps:
        run_step("keygen", "attest", ["keygen", "-o", str(out / "vendor")], out / "keygen.stats.json")
    bundle = out / "datafree.sigstore.json"
    windows = ["--seq-len", str(args.seq_len), "--max-windows", str(args.max_windows)]
    step("sign --baseline", "attest", ["sign", str(pack), "--key", str(key), "--baseline", str(model), "-o", str(bundle),
                                       *windows, "--quiet", "--device", "cpu"])  # fmt: skip
    step("check --policy strict", "attest", ["check", str(pack), "--bundle", str(bundle), "--key", str(out / "vendor.pub"),
                                             "--policy", "strict", "--quiet", "--device", "cpu"], ok_codes=(0, 1))  # fmt: skip
    exported = out / "exported"
    step("export", "uc", ["export", str(pack), "-o", str(exported), "--force", "--quiet"])
    step("verify --deployed", "uc", ["verify", str(pack), "--deployed", str(exported), "--quiet"])
    return rows


def _verdict(row: dict[str, object]) -> str:
    line = str(row["last_line"]).replace(str(ROOT) + "/", "")
    return line[:60] if line else f"(exit {row['exit']})"


def markdown(rows: list[dict[str, object]], ratios: list[dict[str, object]]) -> str:
    head = "| blocks | step | wall s | CPU s | wall s per block | peak RSS MiB | read MB | written MB | verdict | load avg (before) |\n"
    head += "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |\n"
    body = "".join(f"| {r['blocks']} | {r['step']} | {r['seconds']} | {r.get('cpu_s', '-')} | {r['s_per_block']} | {r['peak_rss_mib']} | {r['read_mb']} | "
                   f"{r['written_mb']} | {_verdict(r)} | {r['load_before']} |\n" for r in rows)  # fmt: skip
    if ratios:
        body += "\n| step | blocks | peak RSS MiB | peak ratio | wall s | CPU s | marginal CPU s per block |\n"
        body += "| --- | --- | ---: | ---: | ---: | ---: | ---: |\n"
        body += "".join(f"| {r['step']} | {r['depths']} | {r['rss_small']} -> {r['rss_large']} | {r['rss_ratio']} | {r['s_small']} -> {r['s_large']} | "
                        f"{r['cpu_small']} -> {r['cpu_large']} | {r['marginal_cpu_s_per_block']} |\n" for r in ratios)  # fmt: skip
    return head + body


def depth_ratios(rows: list[dict[str, object]], small: int, large: int) -> list[dict[str, object]]:
    out = []
    by = {(r["blocks"], r["step"]): r for r in rows}
    for (blocks, step), r in by.items():
        if blocks != large or (small, step) not in by:
            continue
        s = by[(small, step)]
        out.append({"step": step, "depths": f"{small} -> {large}", "rss_small": s["peak_rss_mib"], "rss_large": r["peak_rss_mib"],
                    "rss_ratio": round(float(r["peak_rss_mib"]) / float(s["peak_rss_mib"]), 3),  # type: ignore[arg-type]
                    "s_small": s["seconds"], "s_large": r["seconds"],
                    "marginal_s_per_block": round((float(r["seconds"]) - float(s["seconds"])) / (large - small), 2),  # type: ignore[arg-type]
                    "cpu_small": s.get("cpu_s", "-"), "cpu_large": r.get("cpu_s", "-"),
                    "marginal_cpu_s_per_block": round((float(r["cpu_s"]) - float(s["cpu_s"])) / (large - small), 2)  # type: ignore[arg-type]
                    if "cpu_s" in r and "cpu_s" in s else "-"})  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default=str(ROOT / "build" / "scale1b"))
    parser.add_argument("--models", help="where the random models are, or are built (default: --work); a prepared, "
                        "read-only directory may be given: a model found there is used as it is")
    parser.add_argument("--depths", default="6,22", help="decoder blocks of the models the flow runs on (comma separated)")
    parser.add_argument("--calibrated-depths", default="1,6",
                        help="decoder blocks of the models calibrated compression runs on, after the flow ('' for none)")
    parser.add_argument("--steps", default=",".join(STEP_NAMES.values()),
                        help=f"steps to run (comma separated, of {','.join(STEP_NAMES.values())}); the others are skipped")
    parser.add_argument("--samples", type=int, default=8, help="calibration samples (small: this measures cost)")
    parser.add_argument("--calib-seq-len", type=int, default=256)
    parser.add_argument("--seq-len", type=int, default=256, help="evaluation window of sign and check")
    parser.add_argument("--max-windows", type=int, default=2)
    parser.add_argument("--reuse", action="store_true", help="keep the figures of steps an earlier run already measured")
    parser.add_argument("--report-only", action="store_true", help="run nothing: the table of the steps already measured")
    args = parser.parse_args()
    args.calibrated_depths = sorted({int(d) for d in args.calibrated_depths.split(",") if d})
    args.steps = {s for s in args.steps.split(",") if s}
    if args.steps - set(STEP_NAMES.values()):
        parser.error(f"unknown --steps: {sorted(args.steps - set(STEP_NAMES.values()))}")
    depths = [int(d) for d in args.depths.split(",") if d]
    args.models = args.models or args.work
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    print(f"load average at start: {load_average()} ({os.cpu_count()} cores)", flush=True)
    rows: list[dict[str, object]] = []
    for layers in depths:
        rows += flow(work, layers, args, calibrated=False)
    if "calibrated" in args.steps:
        for layers in args.calibrated_depths:
            rows += flow(work, layers, args, calibrated=True)
    ratios = [r for i, small in enumerate(depths) for large in depths[i + 1 :] for r in depth_ratios(rows, small, large)]
    settings = {k: sorted(v) if isinstance(v, set) else v for k, v in vars(args).items()}
    result = {"settings": settings, "cores": os.cpu_count(), "rows": rows, "depth": ratios, "load_end": load_average()}
    (work / "scale_1b.json").write_text(json.dumps(result, indent=1))
    table = markdown(rows, ratios)
    (work / "scale_1b.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
