"""``attest sign``: the vendor's acceptance test and signature. Argument handling only."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .common import evaluation_options, evaluation_settings, say_expected_memory
from .verdict_options import cli_key_reference


@click.command("sign")
@click.argument("pack", type=click.Path(path_type=Path))
@click.option("--key", "key_path", help="private key NAME.key (passphrase from UC_ATTEST_KEY_PASSPHRASE or a prompt) or a pkcs11: URI (PIN from UC_ATTEST_PKCS11_PIN)")
@click.option("--allow-open-key-file", is_flag=True, help="use a private key file that group or others can read (refused by default)")
@click.option("--sigstore", "keyless", is_flag=True, help="sign keyless with Sigstore (Fulcio + Rekor; needs network and an OIDC identity)")
@click.option("--staging", is_flag=True, help="with --sigstore: use Sigstore's staging instance")
@click.option("--baseline", type=click.Path(path_type=Path), help="uncompressed model directory to measure for comparison")
@click.option("--baseline-mismatch-reason", metavar="TEXT",
              help="sign although the --baseline files differ from the source recorded in the pack; TEXT is signed in the attestation")
@click.option("--eval-text", type=click.Path(path_type=Path), help="UTF-8 evaluation text (default: built-in)")
@click.option("--seq-len", default=512, show_default=True, type=click.IntRange(2, 1 << 20), help="tokens per evaluation window")
@click.option("--max-windows", type=click.IntRange(1, 1 << 30), help="evaluate at most N windows")
@click.option("--valid-days", default=365, show_default=True, type=click.IntRange(1, 36525), help="days until the attestation expires")
@click.option("-o", "--output", type=click.Path(path_type=Path), help="bundle path (default: PACK.sigstore.json beside the pack)")
@click.option("--tokens-out", type=click.Path(path_type=Path), help="token file path (default: beside the bundle, NAME.eval-tokens.safetensors)")
@click.option("--oms", is_flag=True, help="also write an OpenSSF model-signing signature of the pack (NAME.model.sig beside the bundle), same key")
@click.option("--json", "as_json", is_flag=True, help="print the result (paths, perplexities, timings) as JSON")
@click.option("--quiet", is_flag=True, help="no progress bars")
@evaluation_options
def sign_command(
    pack: Path,
    key_path: str | None,
    allow_open_key_file: bool,
    keyless: bool,
    staging: bool,
    baseline: Path | None,
    baseline_mismatch_reason: str | None,
    eval_text: Path | None,
    seq_len: int,
    max_windows: int | None,
    valid_days: int,
    output: Path | None,
    tokens_out: Path | None,
    oms: bool,
    as_json: bool,
    quiet: bool,
    streaming: bool,
    device: str,
) -> None:
    """Verify PACK, measure its perplexity (and the baseline's), and sign the result.

    Writes a Sigstore bundle (DSSE, in-toto statement) and the evaluation token
    file it pins. Nothing is written when any step fails.
    """
    from ..attest.acceptance import SignOptions, sign_pack
    from ..estimate import evaluation_peak_bytes

    def say_forecast() -> None:
        say_expected_memory(pack / "config.json", "attest sign",
                            lambda shape: evaluation_peak_bytes(shape, max_windows, seq_len, streaming=streaming))  # fmt: skip

    result = sign_pack(
        SignOptions(
            pack=pack,
            key=cli_key_reference(key_path, allow_open_key_file) if key_path is not None else None,
            keyless=keyless,
            staging=staging,
            oms=oms,
            baseline=baseline,
            baseline_mismatch_reason=baseline_mismatch_reason,
            eval_text=eval_text,
            evaluation=evaluation_settings(seq_len=seq_len, max_windows=max_windows, streaming=streaming, device=device, quiet=quiet),
            valid_days=valid_days,
            output=output,
            tokens_output=tokens_out,
            on_start=None if quiet else say_forecast,
        )
    )
    if as_json:
        click.echo(json.dumps(result.model_dump(mode="json"), indent=2))
        return
    t = result.timings
    click.echo(f"signed by {result.signer}")
    click.echo(f"perplexity {result.perplexity:.6f} over {result.windows} windows of an evaluation token file of {result.token_count} tokens")
    if result.baseline_perplexity is not None and result.ratio is not None:
        click.echo(f"baseline perplexity {result.baseline_perplexity:.6f}, ratio {result.ratio:.6f}")
    click.echo(f"time: verify {t.verify:.2f}s, evaluation {t.evaluation:.2f}s, signing {t.signing:.2f}s, total {t.total:.2f}s")
    click.echo(f"wrote {result.tokens}")
    click.echo(f"wrote {result.bundle}")
    if result.oms_signature is not None:
        click.echo(f"wrote {result.oms_signature} (OpenSSF model signing: the pack's files; check with model_signing verify key)")


__all__ = ["sign_command"]
