"""The functions behind uc_attest's public API (``uc_attest.__all__``): thin, keyword-only, stable.

Why a layer of its own: the modules under ``uc_attest._internal`` are free to be
renamed, split and re-signatured (issue 29 moved them all at once); a vendor's
or customer's script must not notice. Each function here translates a small,
documented call into today's internal objects and nothing else: no logic of
its own, so that the CLI and the Python API can never judge differently.

The rule every function follows: what comes back has verified. A ``verify_*``
function returns only on success and raises :class:`VerificationError` (exit
code 1) otherwise, so a caller who forgets to look at a flag cannot mistake a
failure for a pass. ``check_pack`` is the exception by design: its product is
the customer's judgement, FAIL included, so it returns the results and the
caller reads ``results.verdict``.

Imports are local to each function: ``import uc_attest`` stays cheap (no torch,
no transformers) for a script that only verifies a signature.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import UsageError, VerificationError

if TYPE_CHECKING:
    from .attest.acceptance import SignResult
    from .attest.keys import PrivateKey
    from .attest.trust import TrustAnchor
    from .attest.verify import VerifiedAttestation
    from .check.results import Results
    from .compress.options import CompressOptions
    from .pack.manifest import PackManifest
    from .pack.verified import VerifiedPack
    from .report.verify import ReportVerification

PathLike = str | os.PathLike[str]


def compress_model(
    model_dir: PathLike,
    out: PathLike,
    options: CompressOptions | None = None,
    *,
    overwrite: bool = False,
    progress: bool = False,
) -> PackManifest:
    """Compress the Hugging Face safetensors model in ``model_dir`` into a pack at ``out`` (``uc compress``).

    ``options`` (:class:`CompressOptions`, validated) chooses bits, block size,
    method and the rest; the defaults are the CLI's. The pack is written to a
    temporary sibling and renamed, so ``out`` never holds half a pack;
    ``overwrite`` replaces only a previous pack, never another directory.
    Returns the manifest written (its rebuild recipe included).
    """
    from .compress.options import CompressOptions
    from .compress.pipeline import compress_model as run

    return run(Path(model_dir), Path(out), options if options is not None else CompressOptions.model_validate({}), progress=progress, overwrite=overwrite)


def verify_pack(pack: PathLike, *, architecture: bool = True, progress: bool = False) -> VerifiedPack:
    """Verify every file and every rebuilt tensor of ``pack`` (``uc verify``); return what was proved, or raise.

    One pass: each file is read and hashed once and its tensors rebuilt from the
    same bytes. With ``architecture`` (the default here, as in ``attest check``)
    the tensor set is also checked against the model's config. Raises
    :class:`VerificationError` naming the first failure (and how many more) when
    anything does not match; the returned :class:`VerifiedPack` therefore always
    verified, and can be handed to :func:`load_model` without a second read.
    """
    from .pack.verify import verify_pack as run

    verified = run(pack, progress=progress, architecture=architecture)
    if not verified.report.ok:
        raise VerificationError(f"pack {pack} is NOT VERIFIED: {verified.report.failure_summary()}")
    return verified


def load_model(pack: PathLike | VerifiedPack, *, expected_manifest_sha256: str | None = None) -> Any:
    """A transformers model whose weights are exactly the pack's canonical reconstruction.

    Everything used is checked as it is read: every shard against the manifest,
    every rebuilt tensor against its digest, and the manifest itself against
    ``expected_manifest_sha256`` when the caller has the signed value (from
    :func:`verify_bundle`'s statement). Given the result of :func:`verify_pack`,
    the config is the one that pass hashed. The whole model is held in memory.
    """
    from .evaluate.loading import load_pack_model

    return load_pack_model(pack, expected_manifest_sha256)


def generate_keypair(name: PathLike, *, algorithm: str = "p256", passphrase: bytes | None = None, overwrite: bool = False) -> tuple[Path, Path, str]:
    """Write ``NAME.key`` (mode 0600) and ``NAME.pub`` (``attest keygen``); return both paths and the key's fingerprint.

    ``algorithm`` is ``"p256"`` (ECDSA P-256, the default) or ``"ed25519"``.
    Existing key files are never replaced unless ``overwrite``: a lost signing
    key cannot be recovered. Both files appear or neither does.
    """
    from .attest.keys import Algorithm, write_keypair

    try:
        chosen = Algorithm(algorithm)
    except ValueError:
        raise UsageError(f"unknown key algorithm {algorithm!r}: choose one of {', '.join(a.value for a in Algorithm)}") from None
    return write_keypair(name, chosen, passphrase, overwrite=overwrite)


def sign_pack(
    pack: PathLike,
    key: PathLike | PrivateKey | None = None,
    *,
    keyless: bool = False,
    baseline: PathLike | None = None,
    eval_text: PathLike | None = None,
    seq_len: int = 512,
    max_windows: int | None = None,
    valid_days: int = 365,
    bundle: PathLike | None = None,
    tokens: PathLike | None = None,
    progress: bool = False,
) -> SignResult:
    """The vendor's acceptance test (``attest sign``): verify the pack, measure it, sign what was measured.

    ``key`` is a private key file (``NAME.key``; an encrypted one reads its
    passphrase from ``UC_ATTEST_KEY_PASSPHRASE``), a ``pkcs11:`` URI, or a key
    object already loaded; ``keyless=True`` signs with Sigstore instead (exactly
    one of the two). ``baseline`` is the uncompressed source, measured on the
    same windows so the statement records the ratio. Writes the Sigstore bundle
    and the evaluation token file beside the pack unless ``bundle``/``tokens``
    name other paths; both appear together or not at all.
    """
    from .attest.acceptance import SignOptions
    from .attest.acceptance import sign_pack as run
    from .attest.key_reference import KeyReference
    from .evaluate.settings import EvalSettings

    key_source: Any = KeyReference(os.fspath(key)) if isinstance(key, str | os.PathLike) else key
    return run(
        SignOptions(
            pack=Path(pack),
            key=key_source,
            keyless=keyless,
            baseline=_path(baseline),
            eval_text=_path(eval_text),
            evaluation=EvalSettings(seq_len=seq_len, max_windows=max_windows, progress=progress),
            valid_days=valid_days,
            output=_path(bundle),
            tokens_output=_path(tokens),
        )
    )


def verify_bundle(bundle: PathLike | bytes, trust: TrustAnchor) -> VerifiedAttestation:
    """Verify a signed acceptance test offline against ``trust`` (a :class:`KeyAnchor` or :class:`KeylessAnchor`).

    Returns the verified statement and its signer; raises an
    :class:`AttestationError` (a :class:`VerificationError`, exit code 1) for a
    bad signature, a different signer, an expired or malformed statement. Only
    what this returns is signed: read the numbers from it, never from the file.
    """
    from .attest.verify import verify_bundle as run

    return run(bundle, trust)


def check_pack(
    pack: PathLike,
    trust: TrustAnchor,
    *,
    policy: str | PathLike | None = None,
    bundle: PathLike | None = None,
    tokens: PathLike | None = None,
    deployed: PathLike | None = None,
    progress: bool = False,
) -> Results:
    """The customer's check (``attest check``): every named check, in order, and the verdict under ``policy``.

    ``policy`` is a shipped policy name (``default``, ``strict``,
    ``development``) or a TOML file; ``None`` is the default policy. The bundle
    and token file default to the ones beside the pack. ``deployed`` is a served
    model directory to prove equal to the attested model. Returns the results
    for FAIL as well as PASS (read ``results.verdict``); they are NOT signed
    here: the customer's signed verdict and PDF report are ``attest check
    --sign-key``'s. Inputs that cannot be used at all raise (exit code 2).
    """
    from .check.run import CheckInputs, run_check
    from .evaluate.settings import EvalSettings
    from .policy import load_policy

    inputs = CheckInputs(pack=Path(pack), policy=load_policy(policy), trust=trust, bundle=_path(bundle), tokens=_path(tokens),
                         deployed=_path(deployed), evaluation=EvalSettings(progress=progress))  # fmt: skip
    return run_check(inputs).results


def verify_report(
    report: PathLike,
    vendor: TrustAnchor,
    customer: TrustAnchor | None = None,
    *,
    pack_manifest_sha256: str | None = None,
) -> ReportVerification:
    """Re-verify a PDF report offline (``attest verify-report``); return what verified, or raise.

    Checks the vendor's signed statement and the customer's signed verdict
    embedded in the report, the PDF signature and that the pages are the
    rendering of the signed results; with ``pack_manifest_sha256``, that the
    report is about that pack. Raises :class:`VerificationError` listing the
    problems when anything fails (a report whose verdict is unsigned never
    verifies), :class:`UnreadableInputError` for a file that is no report.
    """
    from .attest.trust import same_signer
    from .report.verify import MAX_REPORT_BYTES, verify_report_bytes
    from .safe_io import read_input_file

    if customer is not None and same_signer(vendor, customer):
        raise UsageError("the vendor's and the customer's anchors name the same signer: a verdict the vendor signed for itself is not the customer's")
    pdf = read_input_file(Path(report), "report", MAX_REPORT_BYTES)
    outcome = verify_report_bytes(pdf, vendor, customer, source=str(report), pack_manifest_sha256=pack_manifest_sha256)
    if not outcome.verified:
        raise VerificationError(f"report {report} is NOT VERIFIED: {len(outcome.problems)} problem(s): {'; '.join(outcome.problems)}")
    return outcome


def _path(value: PathLike | None) -> Path | None:
    return None if value is None else Path(value)
