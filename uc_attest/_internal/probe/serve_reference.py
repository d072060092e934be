"""A reference OpenAI-compatible completions server over transformers: for tests, the demo, and trying the flow.

NOT a production server: one request at a time, no batching, no streaming,
loopback by default. It loads a Hugging Face directory (``uc export``'s
output) with transformers and answers ``GET /v1/models`` and ``POST
/v1/completions`` with prompt log-probabilities in both shapes ``attest
probe`` understands: vLLM's ``prompt_logprobs`` (by token id) and the OpenAI
``echo`` with ``logprobs`` (tokens as text). ``--api openai`` refuses
``prompt_logprobs`` with HTTP 400, as OpenAI's API does, so both detection
paths can be tried.

    python -m uc_attest._internal.probe.serve_reference DIR --port 8000 [--dtype float32|bfloat16|auto] [--api vllm|openai]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

MAX_REQUEST_BYTES = 4 << 20
MAX_PROMPT_TOKENS = 8192


class RequestError(Exception):
    """A request this server refuses (HTTP 400 with the message)."""


class ReferenceEngine:
    """A transformers causal LM and its tokenizer, scoring prompts one at a time."""

    def __init__(self, model_dir: str | os.PathLike[str], *, dtype: str = "auto", name: str | None = None, api: str = "vllm") -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch_dtype: Any = "auto" if dtype == "auto" else getattr(torch, dtype)
        self.model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch_dtype).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        self.name = name or Path(model_dir).name
        self.api = api
        self.vocab = int(self.model.get_input_embeddings().num_embeddings)
        self._lock = threading.Lock()

    def encode(self, prompt: Any) -> list[int]:
        """Token ids of a prompt given as ids (taken as they are) or as text (tokenised, with the tokenizer's special tokens)."""
        if isinstance(prompt, str):
            ids = list(self.tokenizer(prompt)["input_ids"])
        elif isinstance(prompt, list) and prompt and all(isinstance(v, int) and not isinstance(v, bool) for v in prompt):
            ids = list(prompt)
        else:
            raise RequestError("prompt must be a string or a non-empty list of token ids")
        if not ids or len(ids) > MAX_PROMPT_TOKENS or min(ids) < 0 or max(ids) >= self.vocab:
            raise RequestError(f"prompt must have 1 to {MAX_PROMPT_TOKENS} token ids in [0, {self.vocab})")
        return ids

    def logprobs(self, ids: Sequence[int]) -> tuple[list[float | None], int, float]:
        """log P(ids[i] | ids[:i]) for every position (None for the first), the greedy next token and its log-probability."""
        import torch

        with self._lock, torch.inference_mode():
            logits = self.model(input_ids=torch.tensor([list(ids)]), use_cache=False).logits[0].float()
            table = torch.log_softmax(logits, dim=-1)
            picked = table[:-1].gather(1, torch.tensor(list(ids[1:])).unsqueeze(1)).squeeze(1)
            following = int(table[-1].argmax())
            return [None, *(float(v) for v in picked)], following, float(table[-1, following])

    def spell(self, token_id: int) -> str:
        return str(self.tokenizer.decode([token_id], skip_special_tokens=False, clean_up_tokenization_spaces=False))

    def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        """One completions answer for ``body`` (one prompt, at most one generated token)."""
        if body.get("model") != self.name:
            raise RequestError(f"model {body.get('model')!r} is not served here (this server serves {self.name!r})")
        if "prompt_logprobs" in body and self.api == "openai":
            raise RequestError("Unrecognized request argument supplied: prompt_logprobs")
        ids = self.encode(body.get("prompt"))
        scores, following, following_logprob = self.logprobs(ids)
        choice: dict[str, Any] = {"index": 0, "text": self.spell(following), "finish_reason": "length"}
        if body.get("prompt_logprobs") is not None:
            choice["prompt_logprobs"] = [None] + [{str(t): {"logprob": s, "rank": 1, "decoded_token": self.spell(t)}} for t, s in zip(ids[1:], scores[1:])]
            choice["prompt_token_ids"] = ids
        if body.get("echo") and body.get("logprobs") is not None:
            tokens = [*ids, following]
            choice["text"] = self.tokenizer.decode(tokens, skip_special_tokens=False)
            choice["logprobs"] = {"tokens": [self.spell(t) for t in tokens], "token_logprobs": [*scores, following_logprob],
                                  "top_logprobs": None, "text_offset": [0] * len(tokens)}  # fmt: skip
        return {"id": "cmpl-reference", "object": "text_completion", "model": self.name, "choices": [choice],
                "usage": {"prompt_tokens": len(ids), "completion_tokens": 1, "total_tokens": len(ids) + 1}}  # fmt: skip


def handler_for(engine: ReferenceEngine) -> type[BaseHTTPRequestHandler]:
    """The request handler class bound to ``engine``."""

    class Handler(BaseHTTPRequestHandler):
        server_version = "uc-attest-reference/1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet: tests and the demo print their own lines
            pass

        def _send(self, status: int, payload: Any) -> None:
            data = json.dumps(payload).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if self.path.rstrip("/") == "/v1/models":
                self._send(200, {"object": "list", "data": [{"id": engine.name, "object": "model", "owned_by": "reference"}]})
            else:
                self._send(404, {"error": {"message": "not found"}})

        def do_POST(self) -> None:  # noqa: N802
            if self.path.rstrip("/") != "/v1/completions":
                self._send(404, {"error": {"message": "not found"}})
                return
            try:
                length = int(self.headers.get("Content-Length", "0"))
                if not 0 < length <= MAX_REQUEST_BYTES:
                    raise RequestError("request body missing or too large")
                body = json.loads(self.rfile.read(length))
                if not isinstance(body, dict):
                    raise RequestError("the body must be a JSON object")
                self._send(200, engine.complete(body))
            except (RequestError, ValueError) as exc:
                self._send(400, {"error": {"message": str(exc), "type": "invalid_request_error"}})

    return Handler


def make_server(engine: ReferenceEngine, host: str = "127.0.0.1", port: int = 0) -> HTTPServer:
    """A server bound to ``host:port`` (0: any free port; ``server.server_port`` says which); call ``serve_forever``."""
    return HTTPServer((host, port), handler_for(engine))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Reference/test OpenAI-compatible completions server (not for production).")
    parser.add_argument("model_dir")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    parser.add_argument("--api", default="vllm", choices=["vllm", "openai"], help="vllm: both shapes; openai: no prompt_logprobs (HTTP 400)")
    parser.add_argument("--name", help="model name to serve (default: the directory's name)")
    args = parser.parse_args(argv)
    engine = ReferenceEngine(args.model_dir, dtype=args.dtype, name=args.name, api=args.api)
    server = make_server(engine, args.host, args.port)
    print(f"reference server (not for production): {engine.name} on http://{args.host}:{server.server_port}/v1", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
