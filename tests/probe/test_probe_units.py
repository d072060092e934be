"""The probe's parts without a model: URLs and TLS, response parsing, the judgement, the policy section, the record."""

from __future__ import annotations

import math
import ssl
import threading
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from uc_attest._internal.check.probe_record import ProbeLimits, ProbeRecord
from pydantic import ValidationError

from uc_attest._internal.errors import UsageError
from uc_attest._internal.policy.loader import parse_policy
from uc_attest._internal.policy.model import ProbePolicy
from uc_attest._internal.probe.api import ECHO_LOGPROBS, PROMPT_LOGPROBS, request_body, score
from uc_attest._internal.probe.client import EndpointError, ProbeClient, api_base
from uc_attest._internal.probe.judge import judge, served_nll
from uc_attest._internal.probe.run import select_windows


def test_api_base_takes_host_prefix_and_v1_and_refuses_what_it_cannot_state() -> None:
    assert api_base("http://127.0.0.1:8000") == "http://127.0.0.1:8000/v1"
    assert api_base("https://llm.example/serving/v1/") == "https://llm.example/serving/v1"
    for bad in ("ftp://host/v1", "http://user:pw@host/v1", "http://host/v1?x=1", "http://host:99999", "127.0.0.1:8000"):
        with pytest.raises(UsageError):
            api_base(bad)


def test_the_token_never_goes_over_plain_http_off_loopback() -> None:
    with pytest.raises(UsageError, match="plain http"):
        ProbeClient("http://llm.example:8000", token="t")
    assert ProbeClient("http://127.0.0.1:8000", token="t").authenticated
    assert ProbeClient("https://llm.example", token="t").transport.startswith("TLS, certificate and host name verified")
    with pytest.raises(UsageError, match="https endpoints only"):
        ProbeClient("http://127.0.0.1:8000", ca_bundle=Path("ca.pem"))


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "probe test CA")])
    now = datetime.now(timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key()).serial_number(1)
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))  # fmt: skip
    cert_path, key_path = tmp_path / "server.pem", tmp_path / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return cert_path, key_path


def test_tls_is_verified_by_default_and_a_private_ca_bundle_is_accepted(tmp_path: Path) -> None:
    class Models(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            body = b'{"data": [{"id": "m"}]}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    cert, key = _self_signed(tmp_path)
    server = HTTPServer(("127.0.0.1", 0), Models)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"https://127.0.0.1:{server.server_port}"
        with pytest.raises(EndpointError, match="TLS failed"):
            ProbeClient(url, limits=None).get_json("models")
        client = ProbeClient(url, ca_bundle=cert)
        assert client.get_json("models") == {"data": [{"id": "m"}]}
        assert "--ca-bundle server.pem" in client.transport
    finally:
        server.shutdown()
        server.server_close()


def test_request_bodies_send_ids_and_ask_for_prompt_logprobs() -> None:
    assert request_body(PROMPT_LOGPROBS, "m", [5, 6])["prompt_logprobs"] == 0
    body = request_body(ECHO_LOGPROBS, "m", [5, 6])
    assert body["prompt"] == [5, 6] and body["echo"] is True and body["logprobs"] == 0


def _spell(i: int) -> set[str]:
    return {f"t{i}"}


def test_prompt_logprobs_scores_the_attested_ids_and_names_a_different_one() -> None:
    ok = score(PROMPT_LOGPROBS, {"choices": [{"prompt_logprobs": [None, {"6": {"logprob": -1.5}}, {"7": {"logprob": -0.25}}]}]}, [5, 6, 7], _spell)
    assert ok.tokens_equal and ok.logprobs == [None, -1.5, -0.25] and served_nll(ok.logprobs) == 1.75
    other = score(PROMPT_LOGPROBS, {"choices": [{"prompt_logprobs": [None, {"6": {"logprob": -1.5}}, {"9": {"logprob": -0.25}}]}]}, [5, 6, 7], _spell)
    assert not other.tokens_equal and "attested id 7" in other.mismatches[0] and served_nll(other.logprobs) is None
    longer = score(PROMPT_LOGPROBS, {"choices": [{"prompt_logprobs": [None, {"1": {"logprob": -1.0}}, {"6": {"logprob": -1.5}}, {"7": {"logprob": -1.0}}]}]},
                   [5, 6, 7], _spell)  # fmt: skip
    assert not longer.tokens_equal and "scored 4 prompt tokens" in longer.mismatches[0]
    ids = score(PROMPT_LOGPROBS, {"choices": [{"prompt_token_ids": [1, 5, 6, 7], "prompt_logprobs": [None, {"6": {"logprob": -1.5}}, {"7": {"logprob": -1.0}}]}]},
                [5, 6, 7], _spell)  # fmt: skip
    assert not ids.tokens_equal


def test_echo_compares_spellings_and_allows_the_one_generated_token() -> None:
    answer = {"choices": [{"logprobs": {"tokens": ["t5", "t6", "t7", "x"], "token_logprobs": [None, -1.0, -2.0, -0.5]}}]}
    ok = score(ECHO_LOGPROBS, answer, [5, 6, 7], _spell)
    assert ok.tokens_equal and served_nll(ok.logprobs) == 3.0
    wrong = score(ECHO_LOGPROBS, {"choices": [{"logprobs": {"tokens": ["t5", "T6", "t7"], "token_logprobs": [None, -1.0, -2.0]}}]}, [5, 6, 7], _spell)
    assert not wrong.tokens_equal and "position 1" in wrong.mismatches[0]
    with pytest.raises(EndpointError, match="differ in length"):
        score(ECHO_LOGPROBS, {"choices": [{"logprobs": {"tokens": ["t5", "t6"], "token_logprobs": [None]}}]}, [5, 6], _spell)


def test_judge_names_the_windows_outside_and_applies_every_rule() -> None:
    policy = ProbePolicy(window_tolerance=0.01, total_tolerance=0.01, max_share_outside=0.25, min_windows=4)
    pairs = [(i, 100.0, 100.0 + d) for i, d in enumerate([0.1, -0.2, 0.05, 3.0])]
    verdict = judge(pairs, 99, policy)
    assert verdict.ok and verdict.outside == [3]  # one of four outside: 25 % allowed
    assert not judge(pairs[:3], 99, policy).ok  # fewer than min_windows
    worse = judge([*pairs[:2], (2, 100.0, 103.0), pairs[3]], 99, policy)
    assert not worse.ok and "windows 2, 3" in worse.summary
    shifted = judge([(i, 100.0, 100.9) for i in range(8)], 99, ProbePolicy(window_tolerance=0.02, total_tolerance=0.005, min_windows=4))
    assert not shifted.ok and "perplexity" in shifted.summary and shifted.outside == []


def test_probe_policy_section_is_strict_and_bounded() -> None:
    base = 'version = 1\nname = "p"\n[probe]\n'
    assert parse_policy((base + "window_tolerance = 0.05\n").encode(), "p.toml").policy.probe.window_tolerance == 0.05
    for bad in ("window_tolerance = 0.0", "window_tolerance = inf", "total_tolerance = 2.0", "max_share_outside = 1.0", "min_windows = 0",
                "window_tolerence = 0.1", 'min_windows = "8"'):  # fmt: skip
        key = bad.split(" =")[0]
        with pytest.raises(UsageError, match=f"probe.{key}"):  # the typed refusal, naming the key: not any exception at all
            parse_policy((base + bad + "\n").encode(), "p.toml")


def test_select_windows_spreads_evenly_and_keeps_first_and_last() -> None:
    assert select_windows(5, 10) == [0, 1, 2, 3, 4]
    assert select_windows(100, 5) == [0, 25, 50, 74, 99]
    assert select_windows(40, 1) == [0]


def _record(**changes: Any) -> dict[str, Any]:
    rows = [{"index": i, "signed_nll": 100.0, "served_nll": 100.0 + d, "difference_per_token": d / 99, "within_tolerance": abs(d / 99) <= 0.01}
            for i, d in enumerate([0.5, -0.25, 2.0])]  # fmt: skip
    signed = math.exp(300.0 / 297)
    served = math.exp(math.fsum(r["served_nll"] for r in rows) / 297)
    data = {"endpoint": "http://127.0.0.1:1/v1", "model": "m", "api": "prompt_logprobs", "transport": "plain HTTP (no TLS)", "authenticated": False,
            "limits": ProbeLimits(timeout_seconds=1, retries=0, max_response_bytes=1, max_windows=3, time_limit_seconds=1).model_dump(),
            "requests": 4, "seconds": 1.0, "seq_len": 100, "windows_signed": 3, "windows": rows, "windows_outside": [2], "tokens_equal": True,
            "signed_perplexity": signed, "served_perplexity": served, "perplexity_relative_difference": served / signed - 1.0,
            "window_tolerance": 0.01, "total_tolerance": 0.01, "max_share_outside": 0.1, "min_windows": 1}  # fmt: skip
    data.update(changes)
    return data


def test_probe_record_refuses_figures_that_do_not_follow_from_the_windows() -> None:
    ProbeRecord.model_validate(_record())
    for forged in (_record(windows_outside=[]), _record(served_perplexity=1.0), _record(window_tolerance=0.5)):
        with pytest.raises(ValidationError):
            ProbeRecord.model_validate(forged)
    rows = _record()["windows"]
    rows[2] = {**rows[2], "within_tolerance": True}
    with pytest.raises(ValidationError, match="within_tolerance"):
        ProbeRecord.model_validate(_record(windows=rows, windows_outside=[]))
