"""A bounded JSON-over-HTTP client for ``attest probe`` (standard library only).

Why its own client and not a library: the probe must state exactly what it
did, so every bound is explicit and recorded. Each request has a deadline
(connect plus the whole body, not only per socket read, so a server that
drips bytes cannot hold the probe), a response is read up to a byte cap,
the whole probe has a time limit, and only transient failures (timeout,
dropped connection, HTTP 429/502/503/504) are retried, a stated number of
times with a stated back-off. TLS certificates and host names are verified
(the system's CAs, or ``--ca-bundle``); redirects are refused (a bearer token
must never follow one to another host) and no proxy is used. The token comes
from the caller (read from the environment by the CLI), is sent only as an
``Authorization`` header and appears in no message.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import socket
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UnreadableInputError, UsageError

TOKEN_ENV = "UC_ATTEST_PROBE_TOKEN"
RETRY_STATUSES = frozenset({429, 502, 503, 504})
READ_CHUNK = 1 << 16


class EndpointError(UnreadableInputError):
    """The endpoint cannot be used: unreachable, too slow, or its answer is not what the API defines (exit 2)."""


class EndpointRejected(EndpointError):
    """The endpoint answered a request with an HTTP 4xx (the caller may try another API flavour)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ClientLimits:
    """The stated bounds of one probe."""

    timeout_seconds: float = 60.0
    retries: int = 2
    backoff_seconds: float = 1.0  # doubled after each retry
    max_response_bytes: int = 32 << 20
    time_limit_seconds: float = 1800.0


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> None:
        raise EndpointError(f"{req.full_url}: the endpoint redirects (HTTP {code}); give the final URL (redirects are refused so a token cannot follow them)")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def api_base(url: str) -> str:
    """The endpoint's ``.../v1`` base from what the user gave (``http(s)://host[:port][/prefix][/v1]``)."""
    parts = urllib.parse.urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"the endpoint URL must be http:// or https:// with a host, not {url!r}")
    if parts.username or parts.password:
        raise UsageError(f"the endpoint URL must not carry credentials; put a bearer token in {TOKEN_ENV}")
    if parts.query or parts.fragment:
        raise UsageError("the endpoint URL must not have a query or a fragment")
    try:
        parts.port  # noqa: B018 - validates the port
    except ValueError as exc:
        raise UsageError(f"the endpoint URL has a bad port: {exc}") from None
    path = parts.path.rstrip("/")
    if not path.endswith("/v1"):
        path += "/v1"
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, "", ""))


class ProbeClient:
    """POST and GET JSON against one endpoint under :class:`ClientLimits`; counts its requests."""

    def __init__(self, url: str, *, token: str | None = None, ca_bundle: Path | None = None, limits: ClientLimits | None = None) -> None:
        self.base = api_base(url)
        self.limits = limits or ClientLimits()
        parts = urllib.parse.urlsplit(self.base)
        self.tls = parts.scheme == "https"
        if token is not None and not self.tls and not is_loopback(parts.hostname or ""):
            raise UsageError(f"refusing to send the bearer token from {TOKEN_ENV} over plain http to {parts.hostname}: use https")
        if ca_bundle is not None and not self.tls:
            raise UsageError("--ca-bundle applies to https endpoints only")
        self._token = token
        handlers: list[Any] = [urllib.request.ProxyHandler({}), _NoRedirect()]
        if self.tls:
            try:
                context = ssl.create_default_context(cafile=str(ca_bundle) if ca_bundle is not None else None)
            except (OSError, ssl.SSLError) as exc:
                raise UsageError(f"--ca-bundle {ca_bundle}: cannot be used as CA certificates ({exc})") from None
            handlers.append(urllib.request.HTTPSHandler(context=context))
        self._opener = urllib.request.build_opener(*handlers)
        self.transport = (f"TLS, certificate and host name verified against {'--ca-bundle ' + ca_bundle.name if ca_bundle else 'the system CA store'}"
                          if self.tls else "plain HTTP (no TLS)")  # fmt: skip
        self.requests = 0
        self._started = time.monotonic()

    @property
    def authenticated(self) -> bool:
        return self._token is not None

    def elapsed(self) -> float:
        return time.monotonic() - self._started

    def get_json(self, path: str) -> Any:
        return self._call("GET", path, None)

    def post_json(self, path: str, body: dict[str, Any]) -> Any:
        return self._call("POST", path, json.dumps(body, separators=(",", ":")).encode("utf-8"))

    def _call(self, method: str, path: str, data: bytes | None) -> Any:
        url = f"{self.base}/{path.lstrip('/')}"
        delay = self.limits.backoff_seconds
        attempts = self.limits.retries + 1
        for attempt in range(1, attempts + 1):
            try:
                return self._once(method, url, data)
            except _Transient as exc:
                if attempt == attempts:
                    raise EndpointError(f"{url}: {exc} ({attempts} attempts, {self.limits.timeout_seconds:g} s each)") from None
                self._check_time_left(url, delay)
                time.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")

    def _check_time_left(self, url: str, needed: float = 0.0) -> float:
        left = self.limits.time_limit_seconds - self.elapsed()
        if left <= needed:
            raise EndpointError(f"{url}: the probe's time limit of {self.limits.time_limit_seconds:g} s is spent ({self.requests} requests sent)")
        return left

    def _once(self, method: str, url: str, data: bytes | None) -> Any:
        timeout = min(self.limits.timeout_seconds, self._check_time_left(url))
        headers = {"Accept": "application/json", "User-Agent": "uc_attest-probe"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if self._token is not None:
            headers["Authorization"] = f"Bearer {self._token}"
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        deadline = time.monotonic() + timeout
        self.requests += 1
        try:
            with self._opener.open(request, timeout=timeout) as response:
                body = self._read(response, url, deadline)
        except urllib.error.HTTPError as exc:
            status = exc.code
            exc.close()
            if status in RETRY_STATUSES or status >= 500 and status != 501:
                raise _Transient(f"HTTP {status}") from None
            if status in (401, 403):
                hint = "the token was refused" if self._token is not None else f"set {TOKEN_ENV}"
                raise EndpointError(f"{url}: HTTP {status}: not authorised ({hint})") from None
            raise EndpointRejected(f"{url}: HTTP {status}", status) from None
        except EndpointError:
            raise
        except (TimeoutError, socket.timeout):
            raise _Transient(f"no answer within {timeout:g} s") from None
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, ssl.SSLError):
                raise EndpointError(f"{url}: TLS failed: {reason} (a private CA: --ca-bundle FILE)") from None
            if isinstance(reason, (TimeoutError, socket.timeout)):
                raise _Transient(f"no answer within {timeout:g} s") from None
            if isinstance(reason, (ConnectionResetError, ConnectionAbortedError)):
                raise _Transient(f"connection dropped ({reason})") from None
            raise EndpointError(f"{url}: cannot reach the endpoint: {getattr(reason, 'strerror', None) or reason}") from None
        except (ConnectionResetError, ConnectionAbortedError, http.client.RemoteDisconnected, http.client.IncompleteRead) as exc:
            raise _Transient(f"connection dropped ({type(exc).__name__})") from None
        except (http.client.HTTPException, OSError) as exc:
            raise EndpointError(f"{url}: {type(exc).__name__}: {exc}") from None
        return _parse_json(body, url)

    def _read(self, response: Any, url: str, deadline: float) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            if time.monotonic() > deadline:
                raise _Transient(f"the answer took longer than {self.limits.timeout_seconds:g} s")
            chunk = response.read(READ_CHUNK)
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > self.limits.max_response_bytes:
                raise EndpointError(f"{url}: the answer exceeds {self.limits.max_response_bytes} bytes")
            chunks.append(chunk)


class _Transient(Exception):
    """A failure worth retrying (its message says what happened)."""


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _parse_json(body: bytes, url: str) -> Any:
    try:
        return json.loads(body.decode("utf-8"), parse_constant=_no_constants)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise EndpointError(f"{url}: the answer is not JSON ({str(exc)[:80]})") from None


__all__ = ["TOKEN_ENV", "ClientLimits", "EndpointError", "EndpointRejected", "ProbeClient", "api_base", "is_loopback"]
