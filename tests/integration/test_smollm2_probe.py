"""``attest probe`` on the real model: SmolLM2-135M-Instruct (Q4_1 GGUF source), the demo's pack, served by the reference server.

The served directory is ``uc export``'s output computed in bfloat16 (the
signed measurement is float32 compute): another kernel, the same weights,
which must PASS under the shipped default policy; the unquantised original
model behind the same endpoint (another quantisation) must FAIL. A small
perturbation of one tensor (x1.02) stays inside bf16 kernel drift on this
model (bench/probe_drift.py, docs/RESULTS.md): a probe sees behaviour only.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path


from support.probe import serving

from uc_attest._internal.attest.acceptance import SignOptions, sign_pack
from uc_attest._internal.attest.keys import Algorithm, generate_private_key, public_key_pem
from uc_attest._internal.cli.attest import attest_group
from uc_attest._internal.pack.export import export_pack
from uc_attest._internal.probe.serve_reference import ReferenceEngine
from uc_attest._internal.evaluate.settings import EvalSettings
import pytest

pytestmark = pytest.mark.integration


def _probe(url: str, pack: Path, bundle: Path, vendor: Path, out: Path) -> tuple[int, str, dict]:
    from support.cli import run_cli

    result = run_cli(attest_group, "probe", url, "--pack", pack, "--bundle", bundle, "--key", vendor, "--json", out, "--quiet")
    assert "Traceback" not in result.err
    return result.rc, result.out + result.err, json.loads(out.read_text())


def test_probe_of_the_served_demo_pack_passes_and_the_unquantised_original_fails(smollm2_pack: Path, smollm2_dir: Path, tmp_path: Path) -> None:
    pack = tmp_path / "smollm2.ucpack"
    shutil.copytree(smollm2_pack, pack)
    key = generate_private_key(Algorithm.P256)
    vendor = tmp_path / "vendor.pub"
    vendor.write_bytes(public_key_pem(key.public_key()))
    bundle = tmp_path / "smollm2.sigstore.json"
    sign_pack(SignOptions(pack=pack, key=key, output=bundle, evaluation=EvalSettings(seq_len=512, max_windows=12, progress=False)))
    export_pack(pack, tmp_path / "served")
    with serving(ReferenceEngine(tmp_path / "served", dtype="bfloat16", name="smollm2")) as url:
        rc, text, results = _probe(url, pack, bundle, vendor, tmp_path / "honest.json")
    assert rc == 0, text
    probe = results["probe"]
    assert probe["api"] == "prompt_logprobs" and len(probe["windows"]) == 12 and probe["tokens_equal"] and probe["tokenizer_equal"]
    assert max(abs(w["difference_per_token"]) for w in probe["windows"]) < probe["window_tolerance"]

    with serving(ReferenceEngine(smollm2_dir, dtype="bfloat16", name="smollm2")) as url:
        rc, text, results = _probe(url, pack, bundle, vendor, tmp_path / "original.json")
    assert rc == 1, text
    assert next(c for c in results["checks"] if c["name"] == "probe_behaviour")["status"] == "FAIL"
    assert results["probe"]["windows_outside"]
