"""The ``uc`` command group: compress, verify, inspect, eval. Argument handling only."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .common import debug_option, evaluation_options, evaluation_settings, exit_with, run_group, say_expected_memory


@click.group(name="uc", context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="uc_attest")
@debug_option
def uc_group() -> None:
    """Compress a Hugging Face causal LM into a bit-reproducible pack, and verify packs."""


@uc_group.command("compress")
@click.argument("model_dir", type=click.Path(path_type=Path))
@click.option("-o", "--output", "out", type=click.Path(path_type=Path), help="pack directory to create")
@click.option("--reproduce", "reproduce", type=click.Path(path_type=Path), metavar="PACK",
              help="instead of writing a pack: rebuild PACK from MODEL_DIR with the options its manifest records and compare "
                   "every byte (REPRODUCE: PASS, or FAIL and exit 1)")
@click.option("--bits", default=5, show_default=True, type=click.IntRange(2, 8))
@click.option("--bits-for", "bits_for", multiple=True, metavar="GLOB=BITS",
              help="code width for the checkpoint tensors matching GLOB (repeatable; a tensor matched by globs of different widths is refused)")
@click.option("--block-size", default=64, show_default=True, type=click.IntRange(8, 4096), help="weights per scale")
@click.option("--block-size-for", "block_size_for", multiple=True, metavar="GLOB=SIZE",
              help="block size for the checkpoint tensors matching GLOB (repeatable; a tensor matched by globs of different sizes is refused)")
@click.option("--target-bpw", "target_bpw", type=click.FloatRange(2.0, 16.0), metavar="BPW",
              help="cap on effective bits per weight: each block tensor's width and block size chosen by measured sensitivity "
                   "on calibration text (instead of --bits-for/--block-size-for; --bits/--block-size still apply outside the blocks)")
@click.option("--dtype", default="bfloat16", show_default=True, type=click.Choice(["bfloat16", "float16", "float32"]))
@click.option("--method", default="calibrated", show_default=True, type=click.Choice(["calibrated", "datafree"]))
@click.option("--calibration", type=click.Path(path_type=Path), help="calibration text file (default: built-in)")
@click.option("--samples", default=128, show_default=True, type=click.IntRange(1, 100000))
@click.option("--seq-len", default=512, show_default=True, type=click.IntRange(8, 1 << 20))
@click.option("--act-order/--no-act-order", default=True, show_default=True)
@click.option("--refit-grid/--no-refit-grid", default=False, show_default=True,
              help="refit each tensor's codebook and block scales by least squares under the full Hessian, with new sweeps (slower)")
@click.option("--incoherence", default="auto", show_default=True, type=click.Choice(["auto", "off"]),
              help="auto: also code each map after a seeded random-sign Hadamard rotation of its inputs, keep the lower error")
@click.option("--tune-epochs", default=0, show_default=True, type=click.IntRange(0, 100),
              help="epochs of tuning each block's codebooks, scales and biases against the full-precision outputs, codes fixed (0: off)")
@click.option("--calibration-dtype", default="auto", show_default=True, type=click.Choice(["auto", "bfloat16", "float32"]),
              help="dtype of the block replays (auto: bfloat16 where the CPU multiplies bf16 natively, else float32)")
@click.option("--device", default="auto", show_default=True, metavar="auto|cpu|cuda[:N]",
              help="where blocks, activations, Hessians, the GPTQ sweep and the tuning run, one block resident "
                   "(auto: the first CUDA device when there is one); the reconstruction is the canonical one on any device")
@click.option("--threads", type=click.IntRange(1, 4096),
              help="intra-op threads, pinned for the whole run and recorded (default: torch's; the same bytes need the same count)")
@click.option("--resume", is_flag=True, help="continue an interrupted compression from its last completed block")
@click.option("--source-note", default="", help="free text about the source weights, recorded in the manifest")
@click.option("--force", is_flag=True, help="replace an existing output pack")
@click.option("--quiet", is_flag=True, help="no progress bars")
def compress_cmd(model_dir: Path, out: Path, bits: int, bits_for: tuple[str, ...], block_size: int, block_size_for: tuple[str, ...],
                 target_bpw: float | None, dtype: str, method: str,
                 calibration: Path | None, samples: int, seq_len: int, act_order: bool, refit_grid: bool, incoherence: str, tune_epochs: int, calibration_dtype: str,
                 device: str, threads: int | None, resume: bool, source_note: str, force: bool, quiet: bool,
                 reproduce: Path | None) -> None:  # fmt: skip
    """Compress MODEL_DIR (safetensors) into a pack at OUTPUT (or, with --reproduce PACK, rebuild PACK and compare)."""
    if reproduce is not None:
        _reproduce(model_dir, reproduce, calibration, quiet)
        return
    if out is None:
        raise click.UsageError("give -o/--output PACK (or --reproduce PACK)")
    from ..compress.options import CompressOptions
    from ..compress.pipeline import compress_model
    from ..evaluate.measure import resolve_device
    from ..pack.inspect import format_summary, summarize
    from ..pack.reader import open_pack

    if method == "datafree" and tune_epochs:
        raise click.BadParameter("block tuning needs calibration data: use it with --method calibrated", param_hint="--tune-epochs")
    if target_bpw is not None and (method == "datafree" or bits_for or block_size_for):
        raise click.BadParameter("give it with --method calibrated and without --bits-for/--block-size-for", param_hint="--target-bpw")
    options = CompressOptions(bits=bits, bits_for=parse_glob_rule(bits_for, "--bits-for", "BITS", 2, 8), block_size=block_size,
                              block_size_for=parse_glob_rule(block_size_for, "--block-size-for", "SIZE", 8, 4096),
                              target_bpw=target_bpw, dtype=dtype, method=method,  # type: ignore[arg-type]
                              calibration_file=calibration, samples=samples, seq_len=seq_len,
                              act_order=act_order, refit_grid=refit_grid, incoherence=incoherence, tune_epochs=tune_epochs, calibration_dtype=calibration_dtype, resume=resume,  # type: ignore[arg-type]
                              device=resolve_device(device) if method == "calibrated" else "cpu", threads=threads,
                              source_note=source_note)  # fmt: skip
    from ..outputs import check_writable

    check_writable(Path(out))  # an output that cannot be written fails now, in one line, before the forecast and the work
    from ..estimate import compress_peak_bytes

    def say_forecast() -> None:
        say_expected_memory(model_dir / "config.json", "uc compress", lambda shape: compress_peak_bytes(shape, method, samples, seq_len))

    compress_model(model_dir, out, options, progress=not quiet, overwrite=force, on_start=None if quiet else say_forecast)
    click.echo(format_summary(summarize(open_pack(out))))
    click.echo(f"wrote {out}")


REPRODUCE_ALLOWS = {"model_dir", "reproduce", "calibration", "quiet"}


def _reproduce(model_dir: Path, pack: Path, calibration: Path | None, quiet: bool) -> None:
    """``--reproduce PACK``: every other option comes from PACK's manifest, so giving one is a usage error."""
    from ..compress.reproduce import reproduce_pack

    ctx = click.get_current_context()
    given = sorted(name for name in ctx.params if name not in REPRODUCE_ALLOWS
                   and ctx.get_parameter_source(name) not in (click.core.ParameterSource.DEFAULT, None))  # fmt: skip
    if given:
        raise click.UsageError(f"--reproduce takes its options from the pack's manifest; not also {', '.join(given)} "
                               "(only --calibration FILE, where the recorded calibration file is elsewhere)")  # fmt: skip
    result = reproduce_pack(model_dir, pack, calibration, progress=not quiet)
    click.echo(f"pack manifest     sha256:{result.pack_manifest_sha256}")
    if result.rebuilt_manifest_sha256 is not None:
        click.echo(f"rebuilt manifest  sha256:{result.rebuilt_manifest_sha256}")
    for note in result.notes:
        click.echo(f"note: {note}")
    for failure in result.failures:
        click.echo(f"FAIL: {failure}")
    click.echo("REPRODUCE: PASS" if result.passed else "REPRODUCE: FAIL")
    exit_with(0 if result.passed else 1)


def parse_glob_rule(specs: tuple[str, ...], flag: str, name: str, low: int, high: int) -> dict[str, int]:
    """``GLOB=VALUE`` pairs, in the order given; a malformed one, or a value outside low..high, is a usage error."""
    out: dict[str, int] = {}
    for spec in specs:
        pattern, sep, value = spec.rpartition("=")
        if not sep or not pattern or not value.isdigit() or not low <= int(value) <= high:
            raise click.BadParameter(f"{spec!r}: expected GLOB={name} with {name} in {low}..{high}", param_hint=flag)
        out[pattern] = int(value)
    return out


@uc_group.command("verify")
@click.argument("pack", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="print the full report as JSON before the verdict line")
@click.option("--workers", type=click.IntRange(1, 256), help="parallel workers (default: CPU count)")
@click.option("--quiet", is_flag=True, help="no progress bar")
@click.option("--architecture", is_flag=True,
              help="also check the tensor set against the model config.json describes (imports transformers: seconds)")
@click.option("--deployed", type=click.Path(path_type=Path),
              help="also prove that the model directory DIR a serving engine loads holds exactly the pack's tensors and files, "
                   "nothing else (a closed set: docs/DEPLOY.md)")
def verify_cmd(pack: Path, as_json: bool, workers: int | None, quiet: bool, architecture: bool, deployed: Path | None) -> None:
    """Check every file hash and every reconstructed tensor of PACK (and, with --deployed, a served copy of it)."""
    from ..errors import VerificationError
    from ..pack.verify import verify_pack

    if deployed is not None:  # a missing or unreadable served directory: exit 2 before the pack is read
        from ..pack.deployed import require_model_directory  # only here: it imports the exporter (start-up of a plain verify)

        require_model_directory(deployed)
    try:
        verified = verify_pack(pack, progress=not quiet, workers=workers, architecture=architecture)
        report = verified.report
        deployed_report = None
        if deployed is not None:
            from ..pack.deployed import verify_deployed

            deployed_report = verify_deployed(verified.pack, deployed)  # against the manifest just verified
    except VerificationError as exc:  # the manifest itself is corrupt: a verdict, not a usage error
        click.echo(f"FAIL: {exc}")
        click.echo("VERIFY: FAIL")
        exit_with(1)
    if as_json and deployed_report is not None:  # one JSON document: the pack's report and the deployed directory's
        click.echo(json.dumps({"pack": report.model_dump(mode="json"), "deployed": deployed_report.model_dump(mode="json")}, indent=2))
    elif as_json:
        click.echo(report.model_dump_json(indent=2))
    else:
        click.echo(f"files     {sum(f.ok for f in report.files)}/{len(report.files)} ok ({report.bytes_read:,} bytes)")
        click.echo(f"tensors   {sum(t.ok for t in report.tensors)}/{len(report.tensors)} reconstruct to their digests")
        click.echo(f"manifest  sha256:{report.manifest_sha256}")
        click.echo(f"config    {'tensor set checked against it' if architecture else 'not checked against the tensors (--architecture)'}")
        click.echo(f"time      {report.seconds:.2f} s")
    failures = list(report.failures)
    if deployed_report is not None:
        click.echo(f"deployed  {deployed_report.tensors_matching}/{deployed_report.tensors_expected} attested tensors found in "
                   f"{deployed} with their digests; the pack's other files "
                   f"{'identical' if deployed_report.side_files_equal else 'NOT identical'}; every entry of the directory judged")
        failures += [f"deployed {failure}" for failure in deployed_report.failures]
    for failure in failures:
        click.echo(f"FAIL: {failure}")
    ok = report.ok and (deployed_report is None or deployed_report.ok)
    click.echo("VERIFY: PASS" if ok else "VERIFY: FAIL")
    exit_with(0 if ok else 1)


@uc_group.command("export")
@click.argument("pack", type=click.Path(path_type=Path))
@click.option("-o", "--output", "out", required=True, type=click.Path(path_type=Path), help="model directory to create")
@click.option("--max-shard-size", default="2GB", show_default=True, help="largest output shard (e.g. 500MB, 5GB)")
@click.option("--force", is_flag=True, help="replace an existing output directory")
@click.option("--json", "as_json", is_flag=True, help="print what was written (files, SHA-256s) as JSON")
@click.option("--quiet", is_flag=True, help="no progress bar")
def export_cmd(pack: Path, out: Path, max_shard_size: str, force: bool, as_json: bool, quiet: bool) -> None:
    """Write PACK as a Hugging Face model directory (canonical reconstruction, config, tokenizer) that serving engines load."""
    from ..pack.export import export_pack

    report = export_pack(pack, out, max_shard_bytes=parse_size(max_shard_size), overwrite=force, progress=not quiet)
    if as_json:
        click.echo(report.model_dump_json(indent=2))
    else:
        shards = [f for f in report.files if f.tensors]
        click.echo(f"wrote {out}: {report.tensors} tensors ({report.tensor_bytes:,} bytes) in {len(shards)} shard(s), "
                   f"each checked against the manifest's digest; {len(report.files) - len(shards)} other files")
        click.echo(f"pack manifest sha256:{report.pack_manifest_sha256}")


def parse_size(text: str) -> int:
    """``500MB``, ``2GB``, ``1GiB`` or a byte count; anything else is a usage error."""
    units = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 1 << 10, "MIB": 1 << 20, "GIB": 1 << 30}
    spec = text.strip().upper()
    digits = spec.rstrip("KMGIB")
    unit = spec[len(digits):]
    if not digits.isdigit() or unit not in units or int(digits) * units[unit] < 1:
        raise click.BadParameter(f"{text!r}: expected a size such as 500MB or 2GB", param_hint="--max-shard-size")
    return int(digits) * units[unit]


@uc_group.command("inspect")
@click.argument("pack", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True)
def inspect_cmd(pack: Path, as_json: bool) -> None:
    """Summarise PACK: model, parameter counts, effective bits per weight, size."""
    from ..pack.inspect import format_summary, summarize
    from ..pack.reader import open_pack

    summary = summarize(open_pack(pack))
    click.echo(summary.model_dump_json(indent=2) if as_json else format_summary(summary))


@uc_group.command("eval")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--text", type=click.Path(path_type=Path), help="text file (default: built-in evaluation text)")
@click.option("--tokens", type=click.Path(path_type=Path), help="a token file (safetensors) instead of text")
@click.option("--seq-len", default=512, show_default=True, type=click.IntRange(2, 1 << 20))
@click.option("--max-windows", type=click.IntRange(1, 1 << 30))
@click.option("--compute-dtype", default="float32", show_default=True, type=click.Choice(["float32", "bfloat16"]))
@click.option("--reference", type=click.Path(path_type=Path), metavar="MODEL_DIR",
              help="also measure KL(reference || MODEL) per token (mean, 99th percentile) and the reference's perplexity "
                   "on the same windows (a model directory or a pack, same tokenizer)")
@click.option("--json", "as_json", is_flag=True)
@click.option("--quiet", is_flag=True)
@evaluation_options
def eval_cmd(model: Path, text: Path | None, tokens: Path | None, seq_len: int, max_windows: int | None, reference: Path | None,
             compute_dtype: str, as_json: bool, quiet: bool, streaming: bool, device: str) -> None:  # fmt: skip
    """Perplexity of MODEL (a pack or a model directory) over non-overlapping windows.

    A pack is verified first (one pass) and measured from the verified bytes.
    With --reference, the KL divergence of MODEL's next-token distribution from
    the reference's at every predicted position, beside both perplexities.
    """
    from ..evaluate.measure import measure_against_reference, measure_any
    from ..evaluate.text import default_eval_text, read_text_file
    from ..evaluate.tokens import load_token_file, tokenize_text

    if tokens is not None and text is not None:
        raise click.UsageError("give --text or --tokens, not both")
    if tokens is not None:
        ids, _, _ = load_token_file(tokens)
    else:
        body = read_text_file(text) if text is not None else default_eval_text()
        if not model.exists():
            raise click.UsageError(f"no such model or pack: {model}")
        ids = tokenize_text(model, body)
    settings = evaluation_settings(seq_len=seq_len, max_windows=max_windows, compute_dtype=compute_dtype, streaming=streaming,
                                   device=device, quiet=quiet)  # fmt: skip
    if reference is not None:
        if not reference.is_dir():
            raise click.UsageError(f"no such reference model or pack: {reference}")
        compared = measure_against_reference(model, reference, ids, settings)
        if as_json:
            click.echo(json.dumps(compared.result.model_dump(mode="json") | {"kl": compared.kl.model_dump(mode="json")}))
            return
        r, kl = compared.result, compared.kl
        click.echo(f"perplexity {r.perplexity:.4f} over {r.windows} windows, {r.tokens} tokens "
                   f"({r.method}, {r.compute_dtype}, {r.seconds:.1f} s)")
        click.echo(f"reference  {kl.reference_perplexity:.4f} ({kl.reference}); ratio {kl.perplexity_ratio:.4f}")
        click.echo(f"KL(reference || model) mean {kl.mean:.6f} nats/token, p99 {kl.p99:.6f}, max {kl.max:.4f} "
                   f"over {kl.tokens} tokens ({kl.method})")  # fmt: skip
        return
    result = measure_any(model, ids, settings).result
    if as_json:
        click.echo(json.dumps(result.model_dump(mode="json")))
    else:
        click.echo(f"perplexity {result.perplexity:.4f} over {result.windows} windows, {result.tokens} tokens "
                   f"({result.method}, {result.compute_dtype}, {result.seconds:.1f} s)")  # fmt: skip


def main() -> None:
    run_group(uc_group)
