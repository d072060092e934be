"""Conversions into the results model of records made elsewhere: environments and perplexity measurements."""

from __future__ import annotations

from typing import Any

from .results import Environment, PerplexityMeasurement


def environment_record(info: Any) -> Environment:
    """Our flat view of an ``EnvironmentInfo`` (the vendor's, from the predicate, or ours)."""
    data = info.model_dump(mode="json")
    packages = dict(data.pop("packages", {}) or {})
    env_vars = dict(data.pop("env", {}) or {})
    known = {
        "python": data.pop("python", None),
        "platform": data.pop("os", None),
        "machine": data.pop("machine", None),
        "processor": data.pop("cpu_model", None),
        "device": data.pop("device", None),
        "gpu": data.pop("gpu_model", None),
        "dtype": data.pop("dtype", None),
        "threads": data.pop("threads", None),
        "torch": packages.pop("torch", None),
        "transformers": packages.pop("transformers", None),
        "uc_attest": packages.pop("uc_attest", None),
    }
    other = {k: str(v) for k, v in data.items() if v is not None}
    other.update({f"package {k}": str(v) for k, v in packages.items()})
    other.update({f"env {k}": str(v) for k, v in env_vars.items()})
    return Environment(**known, other=other)


def signed_measurement(m: Any) -> PerplexityMeasurement:
    """The vendor's measurement, from the predicate."""
    p = m.pack
    return PerplexityMeasurement(perplexity=p.perplexity, perplexity_hex=p.perplexity_hex, tokens=p.predicted_tokens, windows=m.windows,
                                 seq_len=m.seq_len, method=m.method, window_nll=list(p.window_nll), window_nll_hex=list(p.window_nll_hex))  # fmt: skip


def measured_here(e: Any) -> PerplexityMeasurement:
    """Our measurement, from the evaluator's result."""
    return PerplexityMeasurement(perplexity=e.perplexity, perplexity_hex=e.perplexity_hex, tokens=e.tokens, windows=e.windows,
                                 seq_len=e.seq_len, method=e.method, window_nll=list(e.window_nll), window_nll_hex=list(e.window_nll_hex))  # fmt: skip
