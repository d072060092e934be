"""Hand-built, realistic results for report tests (no pack, model or signature needed).

The numbers imitate a check of a 30-layer SmolLM2-135M pack: 272 tensors,
40 evaluation windows of 512 tokens, a vendor on one CPU and a customer on
another. ``make_results("PASS")`` drifts within the default tolerance;
``make_results("FAIL")`` has a tampered shard, one mismatched tensor and a
perplexity outside the tolerance.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

from uc_attest._internal.check.results import (
    ArtifactIdentity,
    CheckResult,
    CheckStatus,
    Digests,
    Environment,
    Environments,
    FileCheck,
    PerplexityComparison,
    PerplexityMeasurement,
    PolicyRecord,
    Reconstruction,
    Results,
    SignerIdentity,
    TensorCheck,
    ToolInfo,
    block_label,
    derive_verdict,
    summarize_blocks,
    verdict_reasons,
)

REPO = Path(__file__).resolve().parents[2]
SIGNED_AT = datetime(2025, 3, 3, 9, 30, 12, tzinfo=timezone.utc)
CHECKED_AT = datetime(2025, 4, 14, 16, 2, 45, tzinfo=timezone.utc)
KEY_FINGERPRINT = hashlib.sha256(b"vendor public key (test)").hexdigest()


def _h(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def sample_bundle() -> bytes:
    """Bytes that look like a Sigstore bundle; only their hash matters to the report."""
    bundle = {
        "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
        "verificationMaterial": {"publicKey": {"hint": KEY_FINGERPRINT}, "tlogEntries": []},
        "dsseEnvelope": {"payload": "eyJfdHlwZSI6ICJ0ZXN0In0=", "payloadType": "application/vnd.in-toto+json", "signatures": [{"sig": "MEUCIQ==", "keyid": ""}]},
    }
    return (json.dumps(bundle, indent=2) + "\n").encode()


def _tensor_names() -> list[tuple[str, str]]:
    names = [("model.embed_tokens.weight", "quantized")]
    for layer in range(30):
        prefix = f"model.layers.{layer}"
        for proj in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"):
            names.append((f"{prefix}.{proj}.weight", "quantized"))
        names.append((f"{prefix}.input_layernorm.weight", "stored"))
        names.append((f"{prefix}.post_attention_layernorm.weight", "stored"))
    names.append(("model.norm.weight", "stored"))
    return names


def _measurement(nll: list[float], seq_len: int) -> PerplexityMeasurement:
    tokens = len(nll) * (seq_len - 1)
    ppl = math.exp(math.fsum(nll) / tokens)
    return PerplexityMeasurement(
        perplexity=ppl,
        perplexity_hex=ppl.hex(),
        tokens=tokens,
        windows=len(nll),
        seq_len=seq_len,
        method="uc-ppl-v1",
        window_nll=nll,
        window_nll_hex=[v.hex() for v in nll],
    )


def make_results(verdict: str = "PASS", policy_name: str = "default") -> Results:
    rng = random.Random(1234)
    fail = verdict == "FAIL"
    policy_path = REPO / "policies" / f"{policy_name}.toml"
    policy_text = policy_path.read_text(encoding="utf-8")
    policy_sha = hashlib.sha256(policy_text.encode()).hexdigest()
    bundle_sha = hashlib.sha256(sample_bundle()).hexdigest()
    manifest_sha = _h("manifest")

    files = []
    for path, size in [
        ("manifest.json", 48_211),
        ("config.json", 861),
        ("generation_config.json", 132),
        ("tokenizer.json", 2_104_556),
        ("tokenizer_config.json", 3_764),
        ("special_tokens_map.json", 655),
        ("tensors/model-00001-of-00002.safetensors", 41_943_040),
        ("tensors/model-00002-of-00002.safetensors", 23_855_104),
    ]:
        sha = manifest_sha if path == "manifest.json" else _h(path)
        tampered = fail and path == "tensors/model-00002-of-00002.safetensors"
        files.append(
            FileCheck(
                path=path,
                size=size,
                sha256=_h(path + "tampered") if tampered else sha,
                attested_sha256=sha,
                status=CheckStatus.FAIL if tampered else CheckStatus.PASS,
            )
        )

    tensors = []
    for name, kind in _tensor_names():
        digest = "sha256:" + _h(name)
        bad = fail and name == "model.layers.7.mlp.down_proj.weight"
        tensors.append(
            TensorCheck(
                name=name,
                block=block_label(name),
                kind=kind,
                attested_digest=digest,
                computed_digest="sha256:" + _h(name + "x") if bad else digest,
                status=CheckStatus.FAIL if bad else CheckStatus.PASS,
            )
        )

    # NLL summed over the 511 predicted tokens of each window (about 3 nats per token)
    vendor_nll = [511 * (3.05 + 0.25 * math.sin(i / 3.0) + rng.uniform(-0.08, 0.08)) for i in range(40)]
    drift = 25.0 if fail else 0.01
    customer_nll = [v + rng.uniform(-drift, drift * 1.5) for v in vendor_nll]
    attested = _measurement(vendor_nll, 512)
    measured = _measurement(customer_nll, 512)
    baseline = attested.perplexity / 1.083
    diff = measured.perplexity - attested.perplexity
    rel_tol = 0.005
    ppl_ok = abs(diff) <= rel_tol * attested.perplexity

    checks = [
        CheckResult(name="bundle_format", title="Attestation file is well formed", status=CheckStatus.PASS, required=True,
                    summary="A Sigstore bundle v0.3 with a DSSE envelope carrying an in-toto Statement v1.", details={"media_type": "application/vnd.dev.sigstore.bundle.v0.3+json"}),
        CheckResult(name="signature", title="Vendor signature is genuine", status=CheckStatus.PASS, required=True,
                    summary="The DSSE signature verifies with the supplied ECDSA P-256 public key.", details={"key_fingerprint": KEY_FINGERPRINT}),
        CheckResult(name="signer_trust", title="Signer is trusted by the policy", status=CheckStatus.PASS, required=True,
                    summary=f"The signing key {KEY_FINGERPRINT[:16]}... is the key supplied by the customer (the policy lists no keys) and is not revoked."),
        CheckResult(name="attestation_age", title="Attestation is recent and not expired", status=CheckStatus.PASS, required=True,
                    summary="Signed 42.3 days before this check (at most 365 allowed, expires 2026-03-03T09:30:12Z).", details={"age_days": 42.273}),
        CheckResult(name="pack_files", title="Every pack file matches the signed hash",
                    status=CheckStatus.FAIL if fail else CheckStatus.PASS, required=True,
                    summary=("1 of 8 files differs from the signed hash: tensors/model-00002-of-00002.safetensors." if fail else "All 8 files match the SHA-256 in the signed statement; no unsigned files."),
                    details={"files": 8, "mismatched": 1 if fail else 0}),
        CheckResult(name="pack_structure", title="Pack structure is valid", status=CheckStatus.PASS, required=True,
                    summary="Manifest format 1.0 read; every tensor present with the declared shape and codec."),
        CheckResult(name="weights_bit_exact", title="Rebuilt weights are identical to the signed ones",
                    status=CheckStatus.FAIL if fail else CheckStatus.PASS, required=True,
                    summary=("271 of 272 tensors identical; 1 differs (model.layers.7.mlp.down_proj.weight)." if fail else "All 272 tensors rebuilt here are identical bit for bit to the signed fingerprints."),
                    details={"tensors": 272, "mismatched": 1 if fail else 0}),
        CheckResult(name="perplexity_match", title="Quality measured here matches the signed figure",
                    status=CheckStatus.PASS if ppl_ok else CheckStatus.FAIL, required=True,
                    summary=f"Measured {measured.perplexity:.6f} against the attested {attested.perplexity:.6f}: a difference of {abs(diff):.3g} ({abs(diff) / attested.perplexity * 100:.3g}%), {'within' if ppl_ok else 'outside'} the allowed {rel_tol * attested.perplexity:.3g}."),
        CheckResult(name="baseline_ratio", title="Quality loss against the original model is acceptable", status=CheckStatus.PASS, required=True,
                    summary=f"Perplexity is {measured.perplexity / baseline:.4f} times the original model's, within the allowed 1.5."),
    ]
    result_verdict = derive_verdict(checks)
    assert result_verdict.value == verdict, (result_verdict, verdict)
    vendor_env = Environment(python="3.11.9", platform="Linux-6.8.0-52-generic-x86_64-with-glibc2.39", machine="x86_64",
                             processor="AMD EPYC 9454 48-Core Processor", device="cpu", threads=48, torch="2.13.0+cpu",
                             transformers="5.24.0", uc_attest="0.1.0")
    customer_env = Environment(python="3.11.9", platform="Linux-6.1.0-31-amd64-x86_64-with-glibc2.36", machine="x86_64",
                               processor="Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz", device="cpu", threads=16, torch="2.13.0+cpu",
                               transformers="5.24.0", uc_attest="0.1.0", other={"hostname_hash": _h("customer-host")[:12]})
    return Results(
        tool=ToolInfo(version="0.1.0"),
        verdict=result_verdict,
        verdict_reasons=verdict_reasons(checks),
        artifact=ArtifactIdentity(
            model_type="llama",
            model_name="SmolLM2-135M",
            pack_manifest_sha256=manifest_sha,
            signer=SignerIdentity(mode="key", key_fingerprint=KEY_FINGERPRINT),
            signed_at=SIGNED_AT,
            expires_at=SIGNED_AT + timedelta(days=365),
            checked_at=CHECKED_AT,
        ),
        policy=PolicyRecord(name=policy_name, source=f"{policy_name}.toml (shipped with uc_attest)", sha256=policy_sha, text=policy_text),
        digests=Digests(bundle_sha256=bundle_sha, pack_manifest_sha256=manifest_sha, policy_sha256=policy_sha, statement_sha256=_h("statement")),
        checks=checks,
        perplexity=PerplexityComparison(
            attested=attested,
            measured=measured,
            baseline_perplexity=baseline,
            baseline_perplexity_hex=baseline.hex(),
            dataset="wikitext-2-raw-v1 test (sha256 " + _h("wikitext")[:16] + "...)",
            abs_difference=abs(diff),
            rel_difference=abs(diff) / attested.perplexity,
            bit_identical=attested.perplexity_hex == measured.perplexity_hex,
            window_nll_diff=[c - v for c, v in zip(customer_nll, vendor_nll, strict=True)],
            ratio_to_baseline=measured.perplexity / baseline,
            relative_tolerance=rel_tol,
            absolute_tolerance=0.0,
            max_ratio_to_baseline=1.5,
        ),
        reconstruction=Reconstruction(tensors=tensors, blocks=summarize_blocks(tensors)),
        files=files,
        environments=Environments(vendor=vendor_env, customer=customer_env),
    )


def signed_sample(tmp: Path, verdict: str = "PASS") -> tuple[Path, bytes, Results]:
    """A really signed bundle (fresh P-256 key) and results that belong to it.

    Returns (public key path, bundle bytes, results). The statement signs the
    sample's files, tensors and perplexity; the results record the bundle's
    SHA-256 and the key's fingerprint, as ``attest check`` would.
    """
    from uc_attest._internal.attest.keys import (
        Algorithm,
        fingerprint,
        generate_private_key,
        public_key_pem,
    )
    from uc_attest._internal.attest.predicate import (
        PREDICATE_TYPE,
        TOKENS_SUBJECT,
        AcceptanceTestPredicate,
        DatasetInfo,
        Measurement,
        PackInfo,
        PerplexityResult,
        TensorDigest,
    )
    from uc_attest._internal.attest.predicate import ToolInfo as PredicateTool
    from uc_attest._internal.attest.signing import sign_statement
    from uc_attest._internal.attest.statement import DigestSet, Statement, Subject
    from uc_attest._internal.evaluate.environment import EnvironmentInfo

    base = make_results(verdict)
    key = generate_private_key(Algorithm.P256)
    pub = tmp / "vendor.pub"
    pub.write_bytes(public_key_pem(key.public_key()))
    att = base.perplexity.attested
    assert att is not None
    nll_sum = math.fsum(att.window_nll)
    predicate = AcceptanceTestPredicate(
        tool=PredicateTool(version="0.1.0"),
        pack=PackInfo(
            format="uc-pack",
            format_version="1.0",
            manifest_path="ucpack.json",
            manifest_sha256=base.artifact.pack_manifest_sha256,
            model_type="llama",
            architectures=["LlamaForCausalLM"],
            tensors=[TensorDigest(name=t.name, kind=t.kind, digest=t.attested_digest or "") for t in base.reconstruction.tensors],
        ),
        measurement=Measurement(
            method=att.method,
            dataset=DatasetInfo(sha256=_h("tokens"), token_count=20480, text_sha256=_h("text"), text_source="built-in", tokenizer="pack"),
            seq_len=512,
            windows=att.windows,
            pack=PerplexityResult(
                perplexity=att.perplexity,
                perplexity_hex=att.perplexity_hex,
                nll_sum=nll_sum,
                nll_sum_hex=nll_sum.hex(),
                predicted_tokens=att.tokens,
                window_nll=att.window_nll,
                window_nll_hex=att.window_nll_hex,
            ),
        ),
        environment=EnvironmentInfo(
            python="3.11.9", python_implementation="CPython", os="Linux", machine="x86_64", packages={"torch": "2.13.0"},
            device="cpu", cpu_model="AMD EPYC 9454 48-Core Processor", cpu_count=48, dtype="float32", threads=48, interop_threads=48,
            deterministic_algorithms=False, deterministic_warn_only=False, cudnn_deterministic=False, cudnn_benchmark=False,
            float32_matmul_precision="highest",
        ),
        signed_at=SIGNED_AT,
        expires_at=SIGNED_AT + timedelta(days=365),
    )
    subjects = [Subject(name=f"pack/{f.path}", digest=DigestSet(sha256=f.attested_sha256 or "")) for f in base.files]
    subjects.append(Subject(name=TOKENS_SUBJECT, digest=DigestSet(sha256=_h("tokens"))))
    statement = Statement(subject=subjects, predicateType=PREDICATE_TYPE, predicate=predicate.to_json_dict())
    bundle = sign_statement(statement, key)
    data = base.model_dump(mode="json")
    data["digests"]["bundle_sha256"] = hashlib.sha256(bundle).hexdigest()
    data["artifact"]["signer"]["key_fingerprint"] = fingerprint(key.public_key())
    return pub, bundle, Results.model_validate(data)


def rerender_report(report: Path, out: Path, swap: dict[str, bytes]) -> Path:
    """``report`` rendered again by our renderer with the attachments in ``swap`` forced in (unvalidated), unsigned.

    A pikepdf re-save is refused by verify-report's layout check before anything
    else; this forgery is laid out exactly as our renderer writes, so it reaches
    the checks of what is embedded. The pages are those of the original results.
    """
    from unittest import mock

    import pikepdf

    from uc_attest._internal.check.results import load_results
    from uc_attest._internal.report import RESULTS_ATTACHMENT, render_report_bytes

    with pikepdf.open(report) as pdf:
        files = {str(n): bytes(spec.get_file().read_bytes()) for n, spec in pdf.attachments.items()}
    results = load_results(files[RESULTS_ATTACHMENT])
    files.update(swap)
    with mock.patch("uc_attest._internal.report.render.report_attachments", lambda _results, extra: dict(extra)):
        out.write_bytes(render_report_bytes(results, files))
    return out
