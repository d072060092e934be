"""The vendor's acceptance test: verify the pack, measure it, sign what was measured.

Order and why:

1. cheap checks first, so a typo does not cost a full evaluation: every
   option combination that cannot succeed (``_check_signing_mode``, the one
   place the key-xor-keyless rule lives; ``--oms`` with a token key or
   keyless), output folders writable, evaluation text readable, then the key
   loaded (a passphrase or PIN prompt only now) and checked for ``--oms``;
2. ``uc verify`` on the pack: a pack that fails is never signed;
3. the evaluation text is tokenised once with the pack's tokenizer, built
   from the tokenizer bytes step 2 hashed (never read from the pack again); the ids
   go into a safetensors token file pinned by SHA-256, so the customer
   evaluates exactly the same tokens (no tokenizer version can move them);
4. the pack's perplexity (and the baseline's) is measured with the project's
   method, keeping every window's NLL, and the environment is recorded;
5. statement and predicate are built, the canonical payload is signed, the
   bundle is verified again in memory; with ``--oms`` the OpenSSF model
   signature is made in memory over exactly the files just signed; only then
   are the token file, the bundle (and the OMS signature) written, all or none
   (:func:`uc_attest._internal.outputs.write_all`). A failure at any step writes nothing.

The model that is measured is the verified pack (:class:`VerifiedPack`, from
the one verification pass): by default block by block, every tensor rebuilt
again and compared with the digest that pass verified before use; with
``--no-streaming`` loaded whole from the very manifest that was verified.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

from pydantic import BaseModel, ConfigDict

from ..version import __version__
from ..errors import UnreadableInputError, UsageError
from ..evaluate.settings import EvalSettings
from ..outputs import Output, ensure_outputs_writable, write_all
from ..pack.manifest import MANIFEST_NAME
from .errors import AcceptanceTestError, BundleFormatError
from .key_reference import KeyReference
from .oms import NEEDS_KEY_FILE, NEEDS_VENDOR_KEY
from .keys import PrivateKey, fingerprint
from .paths import default_bundle_path, tokens_path_for_bundle
from .predicate import (
    PREDICATE_TYPE,
    TOKENS_SUBJECT,
    AcceptanceTestPredicate,
    BaselineModelInfo,
    BaselineResult,
    DatasetInfo,
    Measurement,
    PackInfo,
    PerplexityResult,
    TensorDigest,
    ToolInfo,
    float_hex,
)
from .provenance import baseline_provenance
from .statement import Statement
from .subjects import build_subjects

TOKEN_FILE_FORMAT = "uc-eval-tokens"


KeySource = PrivateKey | KeyReference
"""A loaded key, or a reference that loads it (a passphrase or PIN prompt) once every usage check has passed."""


@dataclass(frozen=True)
class SignOptions:
    """Everything ``attest sign`` needs. Exactly one of ``key`` and ``keyless`` must be given (checked by :func:`sign_pack`)."""

    pack: Path
    key: KeySource | None = field(default=None, repr=False)
    keyless: bool = False
    staging: bool = False
    oms: bool = False  # also an OpenSSF model-signing signature of the pack, same key, written with the bundle
    baseline: Path | None = None
    baseline_mismatch_reason: str | None = None  # sign a baseline that differs from the pack's source (signed)
    eval_text: Path | None = None
    evaluation: EvalSettings = EvalSettings()  # the windows signed (seq_len, max_windows), where and how they are measured
    valid_days: int = 365
    output: Path | None = None
    tokens_output: Path | None = None
    on_start: Callable[[], None] | None = field(default=None, repr=False)  # called once every refusal has passed, before any work


class SignTimings(BaseModel):
    """Wall time of each phase, in seconds."""

    model_config = ConfigDict(frozen=True)

    verify: float
    evaluation: float
    signing: float
    total: float
    tokenize: float
    pack_eval: float
    baseline_eval: float | None


class SignResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    bundle: Path
    tokens: Path
    oms_signature: Path | None = None
    signer: str
    perplexity: float
    baseline_perplexity: float | None
    ratio: float | None
    windows: int
    token_count: int
    subjects: int
    timings: SignTimings


def read_eval_text(path: Path | None) -> tuple[str, str]:
    """``(text, source)``: the given file (UTF-8, non-empty) or the built-in evaluation text."""
    from ..evaluate.text import SOURCE_NAME, default_eval_text, read_text_file

    if path is None:
        return default_eval_text(), f"built-in:{SOURCE_NAME}"
    p = Path(path)
    if p.is_dir():
        raise UnreadableInputError(f"evaluation text {p} is a directory")
    return read_text_file(p), f"file:{p.name}"


def _result(eval_result: Any) -> PerplexityResult:
    """Our predicate's view of the evaluator's result; refuses non-finite numbers (nothing to attest)."""
    values = [eval_result.perplexity, eval_result.nll_sum, *eval_result.window_nll]
    if not all(math.isfinite(v) for v in values):
        raise AcceptanceTestError("the evaluation produced a non-finite perplexity or NLL: the pack is not fit to sign")
    return PerplexityResult(
        perplexity=eval_result.perplexity,
        perplexity_hex=float_hex(eval_result.perplexity),
        nll_sum=eval_result.nll_sum,
        nll_sum_hex=float_hex(eval_result.nll_sum),
        predicted_tokens=eval_result.tokens,
        window_nll=list(eval_result.window_nll),
        window_nll_hex=[float_hex(v) for v in eval_result.window_nll],
    )


def _verify_pack(pack_path: Path, progress: bool) -> Any:
    """Run the full ``uc verify`` (one pass); the verified pack is what is measured and signed."""
    from ..pack.verify import verify_pack

    verified = verify_pack(pack_path, progress=progress, architecture=True)
    if not verified.report.ok:
        raise AcceptanceTestError(f"pack failed verification, not signed: {verified.report.failure_summary()}")
    return verified


def build_predicate(
    pack: Any,
    report: Any,
    measurement: Measurement,
    environment: Any,
    signed_at: datetime,
    valid_days: int,
) -> AcceptanceTestPredicate:
    manifest = pack.manifest
    return AcceptanceTestPredicate(
        tool=ToolInfo(version=__version__),
        pack=PackInfo(
            format=report.format,
            format_version=report.format_version,
            manifest_path=MANIFEST_NAME,
            manifest_sha256=report.manifest_sha256,
            model_type=manifest.model.model_type,
            architectures=list(manifest.model.architectures),
            tensors=[TensorDigest(name=t.name, kind=t.kind, digest=t.digest) for t in report.tensors],
        ),
        measurement=measurement,
        environment=environment,
        signed_at=signed_at,
        expires_at=signed_at + timedelta(days=valid_days),
    )


@contextlib.contextmanager
def _hf_progress(enabled: bool) -> Iterator[None]:
    """Silence transformers' own progress bars (weight loading) when the user asked for quiet."""
    if enabled:
        yield
        return
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


@dataclass
class _Measured:
    """What the evaluation phase produced."""

    token_bytes: bytes
    measurement: Measurement
    environment: Any
    token_count: int
    tokenize_s: float
    pack_eval_s: float
    baseline_eval_s: float | None


def _measure(options: SignOptions, verified: Any, text: str, text_source: str, baseline_info: BaselineModelInfo | None = None) -> _Measured:
    """Tokenise once, write nothing, measure the pack (and the baseline) on those ids."""
    from ..evaluate.environment import capture_environment
    from ..evaluate.loading import verified_config
    from ..evaluate.measure import measure_model_dir, measure_pack
    from ..evaluate.perplexity import check_token_range, windows_of
    from ..evaluate.tokens import token_file_bytes, tokenize_with, verified_tokenizer

    settings = options.evaluation
    t0 = time.perf_counter()
    text_sha = hashlib.sha256(text.encode("utf-8")).hexdigest()
    ids = tokenize_with(verified_tokenizer(verified), text)  # the tokenizer bytes verify_pack hashed, not read again
    metadata = {"format": TOKEN_FILE_FORMAT, "tokenizer": "pack", "text_sha256": text_sha, "text_source": text_source, "count": str(ids.numel())}
    token_bytes = token_file_bytes(ids, metadata)
    windows_of(ids, settings.seq_len, settings.max_windows)  # too few tokens: fail before loading any model
    t1 = time.perf_counter()

    with _hf_progress(settings.progress):
        vocab = getattr(verified_config(verified), "vocab_size", None)
        if vocab is not None:  # every id the token file will carry, not only those in the scored windows
            check_token_range(ids, int(vocab))
        measured = measure_pack(verified, ids, settings)
    pack_eval = measured.result
    environment = capture_environment(None, device=measured.device, dtype=pack_eval.compute_dtype)
    pack_result = _result(pack_eval)
    t2 = time.perf_counter()

    baseline: BaselineResult | None = None
    ratio: float | None = None
    if options.baseline is not None and baseline_info is not None:
        with _hf_progress(settings.progress):
            base_eval = measure_model_dir(options.baseline, ids, settings).result
        baseline = BaselineResult(model=baseline_info, result=_result(base_eval))
        ratio = pack_result.perplexity / baseline.result.perplexity
    t3 = time.perf_counter()

    measurement = Measurement(
        method=pack_eval.method,
        dataset=DatasetInfo(
            subject=TOKENS_SUBJECT,
            sha256=hashlib.sha256(token_bytes).hexdigest(),
            token_count=int(ids.numel()),
            text_sha256=text_sha,
            text_source=text_source,
            tokenizer="pack",
        ),
        seq_len=settings.seq_len,
        max_windows=settings.max_windows,
        windows=pack_eval.windows,
        pack=pack_result,
        baseline=baseline,
        ratio=ratio,
        ratio_hex=float_hex(ratio) if ratio is not None else None,
    )
    return _Measured(
        token_bytes=token_bytes,
        measurement=measurement,
        environment=environment,
        token_count=int(ids.numel()),
        tokenize_s=t1 - t0,
        pack_eval_s=t2 - t1,
        baseline_eval_s=(t3 - t2) if baseline is not None else None,
    )


def _sign(options: SignOptions, key: PrivateKey | None, payload: bytes, signed_at: datetime) -> tuple[bytes, str]:
    """Sign the payload (key or keyless); a key-mode bundle is verified again before it is returned."""
    if key is not None:
        from .signing import sign_payload
        from .verify import verify_bundle
        from .trust import KeyAnchor

        bundle = sign_payload(payload, key)
        if verify_bundle(bundle, KeyAnchor(key.public_key()), at=signed_at).payload != payload:
            raise BundleFormatError("internal error: the signed payload differs from the statement")
        return bundle, f"key {fingerprint(key.public_key())}"
    from .keyless import sign_keyless

    bundle = sign_keyless(payload, staging=options.staging)
    _check_keyless_payload(bundle, payload)
    return bundle, "sigstore keyless"


def _check_signing_mode(options: SignOptions) -> None:
    """The one place the signing options are judged: every combination that cannot succeed fails here, before any work."""
    if (options.key is None) == (not options.keyless):
        raise UsageError("give exactly one of a signing key (--key) or --sigstore")
    if options.staging and not options.keyless:
        raise UsageError("--staging only applies to --sigstore")
    if options.oms and options.keyless:
        raise UsageError(NEEDS_VENDOR_KEY)
    if options.oms and isinstance(options.key, KeyReference) and options.key.in_token:
        raise UsageError(NEEDS_KEY_FILE)
    if options.valid_days < 1:
        raise UsageError("--valid-days must be at least 1")
    if options.baseline_mismatch_reason is not None and options.baseline is None:
        raise UsageError("--baseline-mismatch-reason needs --baseline")


def _load_key(options: SignOptions) -> PrivateKey | None:
    """The signing key, loaded (a prompt, if any, comes only now); with --oms it must be one model_signing can use."""
    key = options.key.load() if isinstance(options.key, KeyReference) else options.key
    if options.oms:
        from .oms import require_oms_key

        require_oms_key(key)
    return key


def _output_paths(options: SignOptions) -> tuple[Path, Path, Path | None]:
    """Bundle, token and (with --oms) OMS signature paths: distinct, writable, outside the pack."""
    from .paths import oms_path_for_bundle

    pack_path = Path(options.pack)
    bundle_path = Path(options.output) if options.output else default_bundle_path(pack_path)
    tokens_path = Path(options.tokens_output) if options.tokens_output else tokens_path_for_bundle(bundle_path)
    oms_path = oms_path_for_bundle(bundle_path) if options.oms else None
    outputs = [p for p in (bundle_path, tokens_path, oms_path) if p is not None]
    if len({p.resolve() for p in outputs}) != len(outputs):
        raise UsageError("the bundle, the token file and the OMS signature cannot be the same file")
    for out in outputs:
        if out.resolve().is_relative_to(pack_path.resolve()):
            raise UsageError(f"{out} is inside the pack; outputs go beside it")
    ensure_outputs_writable(outputs, [options.eval_text, options.baseline])  # before minutes of measuring: every one can be written
    return bundle_path, tokens_path, oms_path


def sign_pack(options: SignOptions) -> SignResult:
    """Run the acceptance test on ``options.pack`` and write the signed bundle and token file."""

    _check_signing_mode(options)
    bundle_path, tokens_path, oms_path = _output_paths(options)
    if options.baseline is not None and not Path(options.baseline).is_dir():
        raise UsageError(f"no such baseline model directory: {options.baseline}")
    text, text_source = read_eval_text(options.eval_text)
    key = _load_key(options)
    if options.on_start is not None:
        options.on_start()

    t_start = time.perf_counter()
    verified = _verify_pack(Path(options.pack), options.evaluation.progress)
    report, pack = verified.report, verified.pack
    baseline_info = None
    if options.baseline is not None:  # before minutes of measuring: the baseline must be the compressed source
        baseline_info = baseline_provenance(Path(options.baseline), pack.manifest.model.source.files, options.baseline_mismatch_reason)
    t_verified = time.perf_counter()
    measured = _measure(options, verified, text, text_source, baseline_info)
    t_evaluated = time.perf_counter()

    signed_at = datetime.now(timezone.utc).replace(microsecond=0)
    predicate = build_predicate(pack, report, measured.measurement, measured.environment, signed_at, options.valid_days)
    pack_files = {f.path: f.sha256 for f in report.files}
    pack_files[MANIFEST_NAME] = report.manifest_sha256
    subjects = build_subjects(pack_files, measured.measurement.dataset.sha256)
    statement = Statement(subject=subjects, predicateType=PREDICATE_TYPE, predicate=predicate.to_json_dict())
    bundle, signer = _sign(options, key, statement.to_payload(), signed_at)
    outputs = [Output(tokens_path, measured.token_bytes), Output(bundle_path, bundle)]
    if oms_path is not None and key is not None:  # over exactly the files just attested: nothing re-read, nothing re-verified
        from .oms import oms_signature

        outputs.append(Output(oms_path, oms_signature(Path(options.pack), key, pack_files)))
    write_all(outputs)  # all or none
    t_end = time.perf_counter()

    m = measured.measurement
    return SignResult(
        bundle=bundle_path,
        tokens=tokens_path,
        oms_signature=oms_path,
        signer=signer,
        perplexity=m.pack.perplexity,
        baseline_perplexity=m.baseline.result.perplexity if m.baseline else None,
        ratio=m.ratio,
        windows=m.windows,
        token_count=measured.token_count,
        subjects=len(statement.subject),
        timings=SignTimings(
            verify=round(t_verified - t_start, 3),
            evaluation=round(t_evaluated - t_verified, 3),
            signing=round(t_end - t_evaluated, 3),
            total=round(t_end - t_start, 3),
            tokenize=round(measured.tokenize_s, 3),
            pack_eval=round(measured.pack_eval_s, 3),
            baseline_eval=round(measured.baseline_eval_s, 3) if measured.baseline_eval_s is not None else None,
        ),
    )


def _check_keyless_payload(bundle: bytes, payload: bytes) -> None:
    """The keyless bundle must carry exactly our payload (its signature is Sigstore's to check)."""
    from .bundle import read_unverified_payload

    if read_unverified_payload(bundle) != payload:
        raise BundleFormatError("internal error: the Sigstore bundle carries a different payload")
