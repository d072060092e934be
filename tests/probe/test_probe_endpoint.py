"""``attest probe`` against loopback endpoints: honest ones PASS, tampered ones FAIL, broken ones exit 2 in one line.

Every endpoint is the reference server (uc_attest._internal.probe.serve_reference) on
127.0.0.1, serving ``uc export``'s directory of a small trained model, or a
copy of it changed in one way.
"""

from __future__ import annotations

import json
import shutil
import socket
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
import torch
from support.probe import serving, train_tokenizer
from safetensors.torch import load_file, save_file

from uc_attest._internal.check.results import load_results
from uc_attest._internal.cli.attest import attest_group
from uc_attest._internal.compress.options import CompressOptions
from uc_attest._internal.compress.pipeline import compress_model
from uc_attest._internal.pack.export import export_pack
from uc_attest._internal.probe.serve_reference import ReferenceEngine
from uc_attest._internal.errors import UnreadableInputError

pytestmark = pytest.mark.slow

SHIPPED = "default"


def attest(*args: object, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    from support.cli import run_cli

    result = run_cli(attest_group, *args, env=env)
    return result.rc, result.out, result.err


def probe(delivery: Path, url: str, out: Path, *extra: object, env: dict[str, str] | None = None) -> tuple[int, str, str, dict[str, Any] | None]:
    rc, stdout, err = attest("probe", url, "--pack", delivery / "pack", "--key", delivery / "vendor.pub", "--policy", SHIPPED,
                             "--json", out / "results.json", "--quiet", *extra, env=env)  # fmt: skip
    assert "Traceback" not in err
    results = json.loads((out / "results.json").read_text()) if (out / "results.json").exists() else None
    return rc, stdout, err, results


def check(results: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in results["checks"] if c["name"] == name)


@pytest.fixture(scope="module")
def served_bf16(delivery: Path) -> ReferenceEngine:
    return ReferenceEngine(delivery / "served", dtype="bfloat16")


def test_honest_endpoint_with_another_kernel_passes_under_the_shipped_policy(delivery: Path, served_bf16: ReferenceEngine, tmp_path: Path) -> None:
    """The exported weights computed in bfloat16 (the signed measurement is float32 compute): another kernel, same model."""
    with serving(served_bf16) as url:
        rc, out, err, results = probe(delivery, url, tmp_path)
    assert rc == 0, out + err
    assert out.strip().splitlines()[-1] == "PROBE: PASS"
    assert "does not prove which bytes" in out
    assert results is not None and results["verdict"] == "PASS"
    p = results["probe"]
    assert p["api"] == "prompt_logprobs" and p["tokens_equal"] and p["tokenizer_equal"]
    assert len(p["windows"]) == p["windows_signed"] >= 8 and p["windows_outside"] == []
    assert any(w["served_nll"] != w["signed_nll"] for w in p["windows"])  # really another kernel, not the same bits
    assert check(results, "probe_behaviour")["status"] == "PASS" and check(results, "signature")["status"] == "PASS"
    assert load_results((tmp_path / "results.json").read_bytes()).probe is not None


def test_honest_float32_endpoint_over_the_openai_echo_api_passes(delivery: Path, tmp_path: Path) -> None:
    engine = ReferenceEngine(delivery / "served", dtype="float32", api="openai")
    with serving(engine) as url:
        rc, out, err, results = probe(delivery, url, tmp_path, "--max-windows", 12)
    assert rc == 0, out + err
    assert results is not None and results["probe"]["api"] == "echo_logprobs" and len(results["probe"]["windows"]) == 12
    assert "API echo_logprobs" in out


def _variant(delivery: Path, tmp_path: Path, name: str) -> Path:
    target = tmp_path / name
    shutil.copytree(delivery / "served", target)
    return target


def test_perturbed_copy_one_tensor_changed_fails_and_names_the_windows(delivery: Path, tmp_path: Path) -> None:
    served = _variant(delivery, tmp_path, "perturbed")
    tensors = load_file(str(served / "model.safetensors"))
    name = "model.layers.1.mlp.down_proj.weight"
    tensors[name] = (tensors[name].float() * 1.5).to(torch.bfloat16)
    save_file(tensors, str(served / "model.safetensors"), metadata={"format": "pt"})
    with serving(ReferenceEngine(served, dtype="bfloat16", name="served")) as url:
        rc, out, _err, results = probe(delivery, url, tmp_path)
    assert rc == 1 and out.strip().splitlines()[-1] == "PROBE: FAIL"
    assert results is not None and results["verdict"] == "FAIL"
    behaviour = check(results, "probe_behaviour")
    assert behaviour["status"] == "FAIL"
    outside = results["probe"]["windows_outside"]
    assert outside and behaviour["details"]["windows_outside"] == ",".join(map(str, outside))
    assert "windows outside the per-window tolerance: " + ", ".join(map(str, outside)) in out
    assert check(results, "probe_tokens")["status"] == "PASS"  # same tokens, other behaviour


def test_another_quantisation_of_the_same_model_fails(delivery: Path, tmp_path: Path) -> None:
    compress_model(delivery / "model", tmp_path / "p3", CompressOptions(method="datafree", bits=3, block_size=32), progress=False)
    export_pack(tmp_path / "p3", tmp_path / "q3")
    with serving(ReferenceEngine(tmp_path / "q3", dtype="bfloat16", name="served")) as url:
        rc, _out, _err, results = probe(delivery, url, tmp_path)
    assert rc == 1 and results is not None
    assert check(results, "probe_behaviour")["status"] == "FAIL"


class ChatTemplateEngine(ReferenceEngine):
    """A misconfigured server that wraps every raw prompt in a chat template before scoring it."""

    def encode(self, prompt: Any) -> list[int]:
        ids = super().encode(prompt)
        head = list(self.tokenizer("<user> ", add_special_tokens=False)["input_ids"])
        tail = list(self.tokenizer(" <assistant>", add_special_tokens=False)["input_ids"])
        return head + ids + tail


@pytest.mark.parametrize("api", ["vllm", "openai"])
def test_chat_template_applied_to_raw_prompts_fails(delivery: Path, tmp_path: Path, api: str) -> None:
    with serving(ChatTemplateEngine(delivery / "served", dtype="bfloat16", api=api)) as url:
        rc, _out, _err, results = probe(delivery, url, tmp_path)
    assert rc == 1 and results is not None
    tokens = check(results, "probe_tokens")
    assert tokens["status"] == "FAIL" and "does not score the attested token ids" in tokens["summary"]
    assert check(results, "probe_behaviour")["status"] == "FAIL"


@pytest.mark.parametrize("api", ["vllm", "openai"])
def test_another_tokenizer_on_the_server_fails(delivery: Path, tmp_path: Path, api: str) -> None:
    """Same weights, a tokenizer of the same size trained on other text: ids sent as ids score the same, the text probe does not."""
    from transformers import PreTrainedTokenizerFast

    served = _variant(delivery, tmp_path, "other-tokenizer")
    for old in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (served / old).unlink(missing_ok=True)
    size = len(json.loads((delivery / "served" / "tokenizer.json").read_text())["model"]["vocab"])
    other = train_tokenizer("Quite different words: zebra quartz jukebox, vexing fjords, whimsical pyjamas. " * 40, vocab_size=size)
    PreTrainedTokenizerFast(tokenizer_object=other, eos_token="<eos>").save_pretrained(served)
    with serving(ReferenceEngine(served, dtype="bfloat16", name="served", api=api)) as url:
        rc, _out, _err, results = probe(delivery, url, tmp_path)
    assert rc == 1 and results is not None
    assert results["probe"]["tokenizer_equal"] is False or results["probe"]["tokens_equal"] is False
    assert check(results, "probe_tokens")["status"] == "FAIL"


def _handler(answer: Callable[[BaseHTTPRequestHandler, dict[str, Any]], None], seen: list[dict[str, str]] | None = None) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _json(self, status: int, payload: Any, raw: bytes | None = None) -> None:
            data = raw if raw is not None else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802
            if seen is not None:
                seen.append(dict(self.headers))
            self._json(200, {"data": [{"id": "served"}]})

        def do_POST(self) -> None:  # noqa: N802
            if seen is not None:
                seen.append(dict(self.headers))
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            answer(self, body)

    return Handler


def _prompt_logprobs(handler: BaseHTTPRequestHandler, entries: Any) -> None:
    handler._json(200, {"choices": [{"index": 0, "text": "", "prompt_logprobs": entries}]})  # type: ignore[attr-defined]


LIES: dict[str, Callable[[BaseHTTPRequestHandler, dict[str, Any]], None]] = {
    "not JSON": lambda h, b: h._json(200, None, raw=b"<html>gateway</html>"),  # type: ignore[attr-defined]
    "no choices": lambda h, b: h._json(200, {"result": "ok"}),  # type: ignore[attr-defined]
    "two choices": lambda h, b: h._json(200, {"choices": [{"prompt_logprobs": None}, {"prompt_logprobs": None}]}),  # type: ignore[attr-defined]
    "positive logprob": lambda h, b: _prompt_logprobs(h, [None] + [{str(t): {"logprob": 0.5}} for t in b["prompt"][1:]]),
    "logprob as text": lambda h, b: _prompt_logprobs(h, [None] + [{str(t): {"logprob": "-1.0"}} for t in b["prompt"][1:]]),
    "NaN logprob": lambda h, b: h._json(200, None, raw=b'{"choices": [{"prompt_logprobs": [null, {"1": {"logprob": NaN}}]}]}'),  # type: ignore[attr-defined]
    "null inside": lambda h, b: _prompt_logprobs(h, [None, None] + [{str(t): {"logprob": -1.0}} for t in b["prompt"][2:]]),
    "no logprobs at all": lambda h, b: h._json(200, {"choices": [{"index": 0, "text": "x"}]}),  # type: ignore[attr-defined]
}


@pytest.mark.parametrize("lie", sorted(LIES))
def test_endpoint_that_lies_in_the_response_format_is_a_one_line_error(delivery: Path, tmp_path: Path, lie: str) -> None:
    with serving(None, handler=_handler(LIES[lie])) as url:
        rc, out, err, results = probe(delivery, url, tmp_path)
    assert rc == 2, out + err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ")
    assert results is None  # nothing written for an endpoint that cannot be used


def test_endpoint_that_times_out_is_a_one_line_error_after_the_stated_retries(delivery: Path, tmp_path: Path) -> None:
    calls: list[dict[str, str]] = []

    def slow(handler: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        time.sleep(1.5)

    with serving(None, handler=_handler(slow, calls)) as url:
        started = time.monotonic()
        rc, _out, err, _results = probe(delivery, url, tmp_path, "--timeout", 0.4, "--retries", 1)
        elapsed = time.monotonic() - started
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert "no answer within 0.4 s" in err and "2 attempts" in err
    assert sum(1 for c in calls if "Content-Length" in c) == 2  # one try and one retry, each cut at 0.4 s
    assert elapsed < 30


def test_unreachable_endpoint_is_a_one_line_error(delivery: Path, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rc, _out, err, results = probe(delivery, f"http://127.0.0.1:{port}", tmp_path)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "cannot reach the endpoint" in err
    assert results is None


def test_redirect_is_refused(delivery: Path, tmp_path: Path) -> None:
    class Redirect(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            self.send_response(302)
            self.send_header("Location", "http://127.0.0.2:9/v1/models")
            self.send_header("Content-Length", "0")
            self.end_headers()

    with serving(None, handler=Redirect) as url:
        rc, _out, err, _results = probe(delivery, url, tmp_path)
    assert rc == 2 and "redirects" in err


def test_bearer_token_comes_from_the_environment_only_and_is_never_written(delivery: Path, served_bf16: ReferenceEngine, tmp_path: Path) -> None:
    from uc_attest._internal.probe.serve_reference import handler_for

    seen: list[str] = []
    base = handler_for(served_bf16)

    class Recording(base):  # type: ignore[misc, valid-type]
        def do_POST(self) -> None:  # noqa: N802
            seen.append(self.headers.get("Authorization", ""))
            super().do_POST()

    secret = "s3cret-probe-token-value"
    with serving(None, handler=Recording) as url:
        rc, out, err, _results = probe(delivery, url, tmp_path, "--report", tmp_path / "report.pdf", env={"UC_ATTEST_PROBE_TOKEN": secret})
    assert rc == 0, out + err
    assert seen and set(seen) == {f"Bearer {secret}"}
    for path in (tmp_path / "results.json", tmp_path / "report.pdf"):
        assert secret.encode() not in path.read_bytes()
    assert secret not in out + err
    assert json.loads((tmp_path / "results.json").read_text())["probe"]["authenticated"] is True
    rc, _out, err = attest("probe", url, "--token", secret, "--pack", delivery / "pack", "--key", delivery / "vendor.pub")
    assert rc == 2 and "--token" in err  # there is no option for it


def test_a_failed_attestation_never_contacts_the_endpoint(delivery: Path, tmp_path: Path) -> None:
    from uc_attest._internal.attest.keys import Algorithm, generate_private_key, public_key_pem

    calls: list[dict[str, str]] = []
    other = tmp_path / "other.pub"
    other.write_bytes(public_key_pem(generate_private_key(Algorithm.P256).public_key()))
    with serving(None, handler=_handler(lambda h, b: None, calls)) as url:
        rc, out, err = attest("probe", url, "--pack", delivery / "pack", "--key", other, "--json", tmp_path / "results.json", "--quiet")
    assert rc == 1 and out.strip().endswith("PROBE: FAIL"), out + err
    assert calls == []
    results = json.loads((tmp_path / "results.json").read_text())
    assert check(results, "signature")["status"] == "FAIL"
    assert check(results, "probe_tokens")["status"] == "SKIP" and check(results, "probe_behaviour")["status"] == "SKIP"
    assert "probe" not in results


def test_signed_verdict_and_report_of_a_probe_verify_and_a_forged_probe_section_is_refused(delivery: Path, served_bf16: ReferenceEngine, tmp_path: Path) -> None:
    rc, _out, err = attest("keygen", "-o", tmp_path / "customer", "--organization", "Probe Site", env={"UC_ATTEST_KEY_PASSPHRASE": ""})
    assert rc == 0, err
    with serving(served_bf16) as url:
        rc, out, err, _results = probe(delivery, url, tmp_path, "--report", tmp_path / "report.pdf", "--sign-key", tmp_path / "customer.key")
    assert rc == 0, out + err
    vsa = json.loads((tmp_path / "results.vsa.sigstore.json").read_text())
    import base64

    predicate = json.loads(base64.b64decode(vsa["dsseEnvelope"]["payload"]))["predicate"]
    assert predicate["verifier"]["id"] == "https://uc-attest.dev/attest-probe"  # never mistaken for an attest check of the bytes
    assert predicate["verifiedLevels"] == ["UC_ATTEST_POLICY_DEFAULT_ENDPOINT_PROBE"]
    rc, out, err = attest("verify-report", tmp_path / "report.pdf", "--key", delivery / "vendor.pub", "--customer-key", tmp_path / "customer.pub")
    assert rc == 0 and out.strip().splitlines()[-1] == "REPORT: VERIFIED", out + err
    forged = json.loads((tmp_path / "results.json").read_text())
    forged["probe"]["windows"][0]["served_nll"] += 5.0  # a served NLL moved, its shift and verdict left as they were
    with pytest.raises(UnreadableInputError, match="difference_per_token|served"):
        load_results(json.dumps(forged).encode())
