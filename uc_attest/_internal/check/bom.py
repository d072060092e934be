"""``attest bom``: a CycloneDX 1.6 ML-BOM of an attested pack, for a customer's AI inventory.

The BOM describes what the acceptance attestation states, and says how far
that statement was checked:

* the model component (``machine-learning-model``): the pack, identified by
  the SHA-256 of its manifest (which fixes every file and every tensor
  digest), with every attested file and the evaluation token file as nested
  components with their SHA-256; the quantisation (method, bits, block sizes,
  bits per weight) as ``uc_attest:`` properties, read from the pack's manifest
  when the pack is at hand and its manifest is the attested one;
* the baseline the vendor measured against as a ``pedigree`` ancestor, with
  its files' digests;
* the acceptance measurement (pack and baseline perplexity, their ratio, on
  the token file named by digest) and, when ``--results`` is given, the
  customer's re-measurement from ``attest check`` (only results made for
  this pack AND this bundle, by the SHA-256 of each), under
  ``modelCard.quantitativeAnalysis.performanceMetrics``.

Provenance of each figure is explicit: ``uc_attest:attestation.signature``
says whether the bundle's signature was verified (``--key`` or keyless
trust) or not; results.json is the customer's unsigned output and is named
with its SHA-256.

cyclonedx-python-lib builds and serialises the document; it has no classes
for model cards (11.x), so the ``modelCard`` object is added to the model
component's JSON here and the whole document is then validated against the
CycloneDX 1.6 JSON schema that the library ships.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cyclonedx.model import HashAlgorithm, HashType, Property
from cyclonedx.model.bom import Bom, BomMetaData
from cyclonedx.model.component import Component, ComponentType, Pedigree
from cyclonedx.model.tool import ToolRepository
from cyclonedx.output.json import JsonV1Dot6

from ..version import __version__
from ..attest.predicate import AcceptanceTestPredicate
from ..attest.statement import Statement
from ..attest.subjects import AttestedFiles
from ..errors import VerificationError
from ..pack.manifest import PackManifest
from .results import Results

MODEL_REF = "uc-attest-model"


@dataclass(frozen=True)
class BomInputs:
    """What the BOM is made from; ``verified_by`` is None when the bundle's signature was not checked."""

    statement: Statement
    predicate: AcceptanceTestPredicate
    bundle_sha256: str
    verified_by: str | None
    manifest: PackManifest | None = None
    manifest_sha256: str | None = None  # of the manifest bytes read, compared with the attested one
    results: Results | None = None
    results_sha256: str | None = None


def _sha256(hex_digest: str) -> HashType:
    return HashType(alg=HashAlgorithm.SHA_256, content=hex_digest)


def _file_component(name: str, sha256: str, kind: ComponentType = ComponentType.FILE) -> Component:
    return Component(type=kind, name=name, bom_ref=f"{kind.value}:{name}", hashes=[_sha256(sha256)])


def _properties(values: dict[str, Any]) -> list[Property]:
    return [Property(name=f"uc_attest:{k}", value=v if isinstance(v, str) else json.dumps(v, sort_keys=True))
            for k, v in values.items() if v is not None]  # fmt: skip


def _quantisation(manifest: PackManifest | None) -> dict[str, Any]:
    if manifest is None:
        return {"quantization": "not recorded: the pack was not at hand (attest bom --pack PACK)"}
    c, stats = manifest.compression, manifest.stats
    dtypes = sorted({t.dtype for t in manifest.tensors if t.kind == "quantized"})
    return {
        "quantization.method": c.method, "quantization.bits": c.bits, "quantization.bits_for": c.bits_for or None,
        "quantization.block_size": c.block_size, "quantization.block_size_for": c.block_size_for or None,
        "quantization.effective_bits_per_weight": stats.effective_bits_per_weight,
        "quantization.quantized_params": stats.quantized_params, "quantization.passthrough_params": stats.passthrough_params,
        "quantization.codec_bytes": stats.codec_bytes, "quantization.reconstruction_dtype": ",".join(dtypes),
        "quantization.reconstruction_rule": "codebook value x block scale: one float32 multiply, one rounding"
        + (f"; {sum(t.codec is not None and t.codec.transform is not None for t in manifest.tensors)} tensors add a seeded "
           "random-sign Hadamard transform before the rounding (elementwise float32, docs/FORMAT.md 1.1)"
           if manifest.uses_transform() else ""),
        "model.source": manifest.model.source.name, "model.source_note": manifest.model.source.note or None,
    }  # fmt: skip


def _metric(kind: str, value: float, slice_text: str) -> dict[str, str]:
    return {"type": kind, "value": repr(float(value)), "slice": slice_text}


def performance_metrics(inputs: BomInputs) -> list[dict[str, str]]:
    """The acceptance measurement and, when given, the customer's re-measurement."""
    m = inputs.predicate.measurement
    tokens = f"eval-tokens.safetensors sha256:{m.dataset.sha256} ({m.dataset.token_count} tokens, {m.windows} windows of {m.seq_len})"
    signed = "signed acceptance test" if inputs.verified_by else "acceptance test (signature NOT verified)"
    metrics = [_metric("perplexity", m.pack.perplexity, f"pack, {signed}, {tokens}")]
    if m.baseline is not None:
        metrics.append(_metric("perplexity", m.baseline.result.perplexity, f"baseline {m.baseline.model.name}, {signed}, {tokens}"))
    if m.ratio is not None:
        metrics.append(_metric("perplexity-ratio", m.ratio, f"pack / baseline, {signed}, {tokens}"))
    r = inputs.results
    if r is not None:
        where = f"customer re-measurement by attest check at {r.artifact.checked_at} (verdict {r.verdict.value}; results.json sha256:{inputs.results_sha256}, unsigned)"
        if r.perplexity.measured is not None:
            metrics.append(_metric("perplexity", r.perplexity.measured.perplexity, f"pack, {where}, {tokens}"))
        if r.perplexity.ratio_to_baseline is not None:
            metrics.append(_metric("perplexity-ratio", r.perplexity.ratio_to_baseline, f"pack / attested baseline, {where}"))
    return metrics


def _model_component(inputs: BomInputs) -> Component:
    p = inputs.predicate
    attested = AttestedFiles.of(inputs.statement)
    pack_files, tokens_sha256 = attested.files, attested.tokens_sha256
    files = [_file_component(f"pack/{path}", digest) for path, digest in sorted(pack_files.items())]
    files.append(_file_component("eval-tokens.safetensors", tokens_sha256, ComponentType.DATA))
    ancestors = []
    if p.measurement.baseline is not None:
        base = p.measurement.baseline.model
        ancestors.append(Component(type=ComponentType.MACHINE_LEARNING_MODEL, name=base.name,
                                   description="the uncompressed model the vendor measured the pack against",
                                   components=[_file_component(f"baseline/{f.path}", f.sha256) for f in base.files]))  # fmt: skip
    name = inputs.manifest.model.source.name if inputs.manifest is not None else f"{p.pack.model_type} pack"
    props = {
        "pack.format": f"{p.pack.format} {p.pack.format_version}", "pack.manifest_sha256": p.pack.manifest_sha256,
        "pack.tensors": len(p.pack.tensors), "model.type": p.pack.model_type, "model.architectures": p.pack.architectures,
        **_quantisation(inputs.manifest),
        "attestation.predicate_type": inputs.statement.predicate_type, "attestation.bundle_sha256": inputs.bundle_sha256,
        "attestation.signature": f"verified: {inputs.verified_by}" if inputs.verified_by else "NOT verified: no trust anchor given (--key or keyless)",
        "attestation.signed_at": p.signed_at.isoformat(), "attestation.expires_at": p.expires_at.isoformat(),
        "evaluation.tokens_sha256": p.measurement.dataset.sha256, "evaluation.method": p.measurement.method,
    }  # fmt: skip
    return Component(type=ComponentType.MACHINE_LEARNING_MODEL, bom_ref=MODEL_REF, name=f"{name} (uc-pack)",
                     description="compressed model pack; identified by the SHA-256 of its manifest ucpack.json",
                     hashes=[_sha256(p.pack.manifest_sha256)], properties=_properties(props), components=files,
                     pedigree=Pedigree(ancestors=ancestors, notes="compressed with uc_attest") if ancestors else None)  # fmt: skip


def build_bom(inputs: BomInputs) -> bytes:
    """The CycloneDX 1.6 JSON document, validated against the schema when the validator is installed."""
    if inputs.manifest is not None and inputs.manifest_sha256 != inputs.predicate.pack.manifest_sha256:
        raise VerificationError("the pack's manifest is not the attested one (its SHA-256 differs)")
    if inputs.results is not None and inputs.results.artifact.pack_manifest_sha256 != inputs.predicate.pack.manifest_sha256:
        raise VerificationError("results.json is about another pack (its manifest SHA-256 differs from the attested one)")
    if inputs.results is not None and inputs.results.digests.bundle_sha256 != inputs.bundle_sha256:
        raise VerificationError("results.json was made for another vendor bundle (its bundle SHA-256 differs from this bundle's)")
    tool = Component(type=ComponentType.APPLICATION, name="uc_attest", version=__version__)
    bom = Bom(metadata=BomMetaData(tools=ToolRepository(components=[tool]), timestamp=datetime.now(UTC), component=_model_component(inputs)))
    document = json.loads(JsonV1Dot6(bom).output_as_string())
    parameters = {"task": "text-generation", "architectureFamily": inputs.predicate.pack.model_type,
                  "modelArchitecture": ",".join(inputs.predicate.pack.architectures)}  # fmt: skip
    document["metadata"]["component"]["modelCard"] = {
        "modelParameters": parameters,
        "quantitativeAnalysis": {"performanceMetrics": performance_metrics(inputs)},
    }
    text = json.dumps(document, indent=2) + "\n"
    validate_bom(text)
    return text.encode()


def validate_bom(text: str) -> None:
    """Validate against the CycloneDX 1.6 JSON schema (skipped only when jsonschema is not installed)."""
    from cyclonedx.exception import MissingOptionalDependencyException
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    try:
        error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)
    except MissingOptionalDependencyException:
        return
    if error is not None:
        raise VerificationError(f"internal error: the BOM does not validate against CycloneDX 1.6: {error}")
