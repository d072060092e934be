"""``attest keygen``: create a signing key pair. Argument handling only; the work is in uc_attest._internal.attest.keys."""

from __future__ import annotations

import sys

import click

from ..attest.keys import PASSPHRASE_ENV, Algorithm, passphrase_from_env, write_keypair


def stdin_is_interactive() -> bool:
    """Whether a person can answer a prompt (a function so that tests can pretend)."""
    return sys.stdin.isatty()


def _new_passphrase() -> bytes | None:
    """From the environment, else a confirmed prompt on a terminal, else none (the key is written unencrypted)."""
    env = passphrase_from_env()
    if env is not None:
        return env or None
    if stdin_is_interactive():
        text = click.prompt(
            "Passphrase for the new key (empty: unencrypted)",
            default="",
            show_default=False,
            hide_input=True,
            confirmation_prompt=True,
            err=True,
        )
        return text.encode("utf-8") or None
    return None


@click.command("keygen")
@click.option("-o", "--output", "name", required=True, metavar="NAME", help="writes NAME.key (private, 0600) and NAME.pub")
@click.option(
    "--algorithm",
    default=Algorithm.P256.value,
    show_default=True,
    type=click.Choice([a.value for a in Algorithm], case_sensitive=False),
    help="p256: ECDSA P-256 with SHA-256; ed25519: pure Ed25519",
)
@click.option("--force", is_flag=True, help="replace existing NAME.key / NAME.pub")
@click.option("--organization", help="also write NAME.crt: a self-signed certificate naming this organisation (for the PDF signature)")
def keygen_command(name: str, algorithm: str, force: bool, organization: str | None) -> None:
    """Create a signing key pair and print its fingerprint.

    The private key is encrypted when a passphrase is given in
    UC_ATTEST_KEY_PASSPHRASE or typed at the prompt (never on the command line).
    The fingerprint is the SHA-256 of the public key's DER SubjectPublicKeyInfo.
    """
    algo = Algorithm.parse(algorithm)
    passphrase = _new_passphrase()
    key_path, pub_path, fp = write_keypair(name, algo, passphrase, overwrite=force)
    state = "encrypted" if passphrase else "unencrypted"
    click.echo(f"wrote {key_path} ({algo.value}, {state}, mode 0600)")
    click.echo(f"wrote {pub_path}")
    if organization is not None:
        from ..attest.certificates import certificate_path_for_key, self_signed_certificate, write_certificate
        from ..attest.keys import load_private_key

        cert_path = certificate_path_for_key(str(key_path))
        write_certificate(cert_path, self_signed_certificate(load_private_key(key_path, passphrase), organization))
        click.echo(f"wrote {cert_path} (self-signed, O={organization.strip()})")
    if not passphrase:
        click.echo(f"warning: {key_path} is not encrypted (set {PASSPHRASE_ENV} to encrypt it)", err=True)
    click.echo(f"fingerprint: {fp}")
