"""Summary of a pack for ``uc inspect``: what it holds and how many bits it spends."""

from __future__ import annotations

from collections import Counter

from pydantic import BaseModel, ConfigDict

from .reader import Pack


class InspectSummary(BaseModel):
    model_config = ConfigDict(extra="forbid")
    format: str
    format_version: str
    model_type: str
    architectures: list[str]
    source: str
    source_note: str
    method: str
    bits: int
    block_size: int
    total_params: int
    quantized_params: int
    passthrough_params: int
    quantized_tensors: int
    passthrough_tensors: int
    roles: dict[str, int]
    codec_bytes: int
    effective_bits_per_weight: float
    pack_bytes: int
    manifest_sha256: str
    # per-tensor coding (--target-bpw, --bits-for, --block-size-for): quantized tensors by "B bits / block S"
    codings: dict[str, int] = {}
    target_bpw: float | None = None  # the cap --target-bpw gave, when the allocation was chosen by the compressor
    tensor_codings: dict[str, str] = {}  # each quantized tensor's "B bits / block S", from its own codec parameters
    transformed_tensors: int = 0  # quantized tensors whose reconstruction includes the incoherence transform (format 1.1)


def summarize(pack: Pack) -> InspectSummary:
    m = pack.manifest
    q = [t for t in m.tensors if t.kind == "quantized"]
    p = [t for t in m.tensors if t.kind == "passthrough"]
    roles = Counter(t.role for t in m.tensors)
    pack_bytes = sum(f.size for f in m.files) + len(pack.manifest_bytes)
    tensor_codings = {t.name: f"{t.codec.bits} bits / block {t.codec.block_size}" for t in q if t.codec is not None}
    target = m.compression.calibration.get("target_bpw")
    return InspectSummary(
        format=m.format,
        format_version=m.format_version,
        model_type=m.model.model_type,
        architectures=m.model.architectures,
        source=m.model.source.name,
        source_note=m.model.source.note,
        method=m.compression.method,
        bits=m.compression.bits,
        block_size=m.compression.block_size,
        total_params=m.stats.quantized_params + m.stats.passthrough_params,
        quantized_params=m.stats.quantized_params,
        passthrough_params=m.stats.passthrough_params,
        quantized_tensors=len(q),
        passthrough_tensors=len(p),
        roles=dict(sorted(roles.items())),
        codec_bytes=m.stats.codec_bytes,
        effective_bits_per_weight=m.stats.effective_bits_per_weight,
        pack_bytes=pack_bytes,
        manifest_sha256=pack.manifest_sha256,
        codings=dict(sorted(Counter(tensor_codings.values()).items(), key=lambda kv: _coding_order(kv[0]))),
        target_bpw=float(target) if isinstance(target, (int, float)) and not isinstance(target, bool) else None,
        tensor_codings=tensor_codings,
        transformed_tensors=sum(t.codec is not None and t.codec.transform is not None for t in q),
    )


def _coding_order(coding: str) -> tuple[int, int]:
    bits, _, block = coding.partition(" bits / block ")
    return int(bits), int(block)


def format_summary(s: InspectSummary) -> str:
    lines = [
        f"format            {s.format} {s.format_version}",
        f"model             {s.model_type} ({', '.join(s.architectures) or '-'}) from {s.source}",
    ]
    if s.source_note:
        lines.append(f"source note       {s.source_note}")
    lines += [
        f"compression       {s.method}, {s.bits} bits, block {s.block_size}",
        f"parameters        {s.total_params:,} ({s.quantized_params:,} quantized, {s.passthrough_params:,} passthrough)",
        f"tensors           {s.quantized_tensors} quantized, {s.passthrough_tensors} passthrough",
        f"roles             {', '.join(f'{k}={v}' for k, v in s.roles.items())}",
        f"effective bits    {s.effective_bits_per_weight:.4f} per quantized weight (codes, scales, codebooks)",
    ]
    if s.target_bpw is not None:
        lines.append(f"allocation        chosen per tensor by measured sensitivity under --target-bpw {s.target_bpw:g}")
    if len(s.codings) > 1 or s.target_bpw is not None:
        lines.append(f"codings           {', '.join(f'{n} x {c}' for c, n in s.codings.items())} (per tensor: --json)")
    if s.transformed_tensors:
        lines.append(f"incoherence       {s.transformed_tensors} of {s.quantized_tensors} tensors rotated (random-sign Hadamard)")
    lines += [
        f"pack size         {s.pack_bytes:,} bytes",
        f"manifest sha256   {s.manifest_sha256}",
    ]
    return "\n".join(lines)
