"""``attest sign``: the vendor's acceptance test and signature. Argument handling only."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from ..errors import UsageError
from .common import evaluation_options
from .verdict_options import load_cli_signing_key


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
    from ..evaluate.measure import resolve_device

    if (key_path is None) == (not keyless):
        raise UsageError("give exactly one of --key NAME.key or --sigstore")
    if staging and not keyless:
        raise UsageError("--staging only applies to --sigstore")
    key = None
    if key_path is not None:
        key = load_cli_signing_key(key_path, allow_open_key_file)
    if oms:
        from ..attest.oms import require_oms_key

        require_oms_key(key)  # before any work
    result = sign_pack(
        SignOptions(
            pack=pack,
            key=key,
            keyless=keyless,
            staging=staging,
            baseline=baseline,
            baseline_mismatch_reason=baseline_mismatch_reason,
            eval_text=eval_text,
            seq_len=seq_len,
            max_windows=max_windows,
            valid_days=valid_days,
            output=output,
            tokens_output=tokens_out,
            progress=not quiet,
            streaming=streaming,
            device=resolve_device(device),
        )
    )
    oms_path = _sign_oms(pack, key, result.bundle) if oms else None
    if as_json:
        click.echo(json.dumps({**result.model_dump(mode="json"), "oms_signature": str(oms_path) if oms_path else None}, indent=2))
        return
    t = result.timings
    click.echo(f"signed by {result.signer}")
    click.echo(f"perplexity {result.perplexity:.6f} over {result.windows} windows of an evaluation token file of {result.token_count} tokens")
    if result.baseline_perplexity is not None and result.ratio is not None:
        click.echo(f"baseline perplexity {result.baseline_perplexity:.6f}, ratio {result.ratio:.6f}")
    click.echo(f"time: verify {t.verify:.2f}s, evaluation {t.evaluation:.2f}s, signing {t.signing:.2f}s, total {t.total:.2f}s")
    click.echo(f"wrote {result.tokens}")
    click.echo(f"wrote {result.bundle}")
    if oms_path is not None:
        click.echo(f"wrote {oms_path} (OpenSSF model signing: the pack's files; check with model_signing verify key)")


def _sign_oms(pack: Path, key: Any, bundle: Path) -> Path:
    """The OMS signature, bound to the files the acceptance bundle just written attests."""
    from ..attest.oms import sign_oms
    from ..attest.paths import oms_path_for_bundle
    from ..attest.subjects import split_subjects
    from ..attest.verify import verify_bundle
    from ..attest.trust import KeyAnchor

    attested, _ = split_subjects(verify_bundle(bundle, KeyAnchor(key.public_key())).statement)
    return sign_oms(pack, key, oms_path_for_bundle(bundle), attested)


__all__ = ["sign_command"]
