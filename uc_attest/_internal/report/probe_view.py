"""The report's section on a live endpoint probe (``attest probe``): worded here, laid out by the template.

Says first what a probe proves and what it does not (behaviour on the
attested windows, not the bytes loaded), then the endpoint, the API used, the
limits the client ran under, the perplexity served against the signed one,
and the windows outside the per-window tolerance; the chart is the same one
the perplexity section draws (served minus signed NLL per window).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..check.results import Results
from .chart import window_diff_svg


@dataclass(frozen=True)
class ProbeView:
    proves: str
    rows: list[tuple[str, str]]
    outside: list[dict[str, str]]
    chart_svg: str
    caption: str


def probe_view(r: Results) -> ProbeView | None:
    """The probe section's values, or None for the results of ``attest check``."""
    p = r.probe
    if p is None:
        return None
    limits = p.limits
    rows = [
        ("Endpoint", p.endpoint),
        ("Model asked for", p.model),
        ("API", {"prompt_logprobs": "prompt_logprobs (vLLM): log-probabilities by token id",
                 "echo_logprobs": "echo with logprobs (OpenAI completions): tokens as text"}[p.api]),  # fmt: skip
        ("Transport", p.transport + ("; a bearer token was sent (never recorded)" if p.authenticated else "; no credentials")),
        ("Limits", f"{limits.timeout_seconds:g} s per request, {limits.retries} retries (1 s back-off, doubling), answers up to "
                   f"{limits.max_response_bytes >> 20} MiB, at most {limits.max_windows} windows, {limits.time_limit_seconds:g} s in all"),  # fmt: skip
        ("Requests", f"{p.requests} in {p.seconds:.1f} s"),
        ("Windows", f"{len(p.windows)} of the {p.windows_signed} signed windows of {p.seq_len} tokens, sent as token ids"),
        ("Tokens", "every scored position is the attested id" if p.tokens_equal else "the endpoint does NOT score the attested ids: "
                   + "; ".join(p.token_mismatches[:3])),  # fmt: skip
        ("Tokenizer", f"windows {', '.join(str(i) for i in p.text_windows)} sent as text: "
                      + ("tokenised exactly as by the pack's tokenizer" if p.tokenizer_equal else "tokenised differently from the pack's tokenizer")),  # fmt: skip
    ]
    if p.signed_perplexity is not None and p.served_perplexity is not None and p.perplexity_relative_difference is not None:
        rows.append(("Perplexity on these windows", f"{p.served_perplexity:.6g} served, {p.signed_perplexity:.6g} signed "
                                                    f"({p.perplexity_relative_difference:+.3%}; at most {p.total_tolerance:.2%} allowed)"))  # fmt: skip
    rows.append(("Per-window tolerance", f"{p.window_tolerance:g} nats per predicted token; at most {p.max_share_outside:.0%} of the windows "
                                         f"may exceed it; at least {p.min_windows} windows"))  # fmt: skip
    outside = [{"index": str(w.index), "signed": f"{w.signed_nll:.4f}", "served": f"{w.served_nll:.4f}", "shift": f"{w.difference_per_token:+.5f}"}
               for w in p.windows if not w.within_tolerance]  # fmt: skip
    diffs = [w.served_nll - w.signed_nll for w in p.windows]
    caption = ("Each bar is one probed window: the endpoint's total loss on it (negative log-likelihood, nats) minus the signed one. "
               f"{len(outside)} of {len(p.windows)} windows are outside the per-window tolerance.")  # fmt: skip
    return ProbeView(proves=p.proves, rows=rows, outside=outside[:50], chart_svg=window_diff_svg(diffs) if diffs else "", caption=caption)


__all__ = ["ProbeView", "probe_view"]
