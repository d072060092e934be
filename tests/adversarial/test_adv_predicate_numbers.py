"""A signed statement whose numbers contradict each other is refused by every verifier.

The vendor's key signs these forgeries (a buggy or dishonest signer): the
signature is genuine, so only the cross-checks stand between them and a PASS:
ratio = pack / baseline perplexity, perplexity = exp(nllSum / predictedTokens),
nllSum = the sum of the window NLLs, predictedTokens = windows x (seqLen - 1).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from support.delivery import check, resign

from uc_attest._internal.attest import KeyAnchor, verify_bundle
from uc_attest._internal.attest.errors import StatementError

pytestmark = pytest.mark.slow  # the shared signed delivery (tests/conftest.py)


def _set(node: dict[str, Any], key: str, value: float) -> None:
    node[key] = value
    node[key + "Hex"] = value.hex()


def _pack(statement: dict[str, Any]) -> dict[str, Any]:
    return statement["predicate"]["measurement"]["pack"]


EDITS = {
    "ratio": lambda s: _set(s["predicate"]["measurement"], "ratio", s["predicate"]["measurement"]["ratio"] * 0.9),
    "perplexity": lambda s: _set(_pack(s), "perplexity", _pack(s)["perplexity"] * 0.99),
    "nllSum": lambda s: _set(_pack(s), "nllSum", _pack(s)["nllSum"] - 1.0),
    "windowNll": lambda s: (_pack(s)["windowNll"].__setitem__(0, _pack(s)["windowNll"][0] - 1.0),
                            _pack(s)["windowNllHex"].__setitem__(0, _pack(s)["windowNll"][0].hex())),  # fmt: skip
    "predictedTokens": lambda s: _pack(s).__setitem__("predictedTokens", _pack(s)["predictedTokens"] + 1),
}


def _consistent_lower_perplexity(statement: dict[str, Any]) -> None:
    """A forgery that keeps every relation true: lower every window NLL, recompute sum, perplexity and ratio."""
    m = statement["predicate"]["measurement"]
    pack = m["pack"]
    pack["windowNll"] = [v * 0.5 for v in pack["windowNll"]]
    pack["windowNllHex"] = [v.hex() for v in pack["windowNll"]]
    _set(pack, "nllSum", math.fsum(pack["windowNll"]))
    _set(pack, "perplexity", math.exp(pack["nllSum"] / pack["predictedTokens"]))
    _set(m, "ratio", pack["perplexity"] / m["baseline"]["result"]["perplexity"])


@pytest.mark.parametrize("field", sorted(EDITS))
def test_a_statement_whose_numbers_disagree_is_refused(site: Any, vendor_key: Any, tmp_path: Path, field: str) -> None:
    resign(site.bundle, vendor_key, edit=EDITS[field])
    with pytest.raises(StatementError, match="malformed acceptance-test predicate"):
        verify_bundle(site.bundle, KeyAnchor(site.key))
    rc, _out, _err, results = check(site, tmp_path / "r.json")
    assert rc == 1 and results is not None
    signature = next(c for c in results["checks"] if c["name"] == "signature")
    assert signature["status"] == "FAIL" and "StatementError" in signature["summary"]


def test_the_unedited_statement_resigned_still_verifies(site: Any, vendor_key: Any) -> None:
    resign(site.bundle, vendor_key)
    assert verify_bundle(site.bundle, KeyAnchor(site.key)).predicate.measurement.ratio is not None


def test_a_consistent_forgery_passes_the_cross_checks_but_not_the_re_measurement(site: Any, vendor_key: Any, tmp_path: Path) -> None:
    """The cross-checks prove coherence, not truth: the re-measured perplexity catches a coherent lie."""
    resign(site.bundle, vendor_key, edit=_consistent_lower_perplexity)
    verify_bundle(site.bundle, KeyAnchor(site.key))
    rc, _out, _err, results = check(site, tmp_path / "r.json")
    assert rc == 1
    assert {c["name"] for c in results["checks"] if c["status"] == "FAIL"} == {"perplexity_match"}
