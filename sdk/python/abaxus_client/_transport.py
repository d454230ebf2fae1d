"""Sending one logical call: auth, encoding, the retry loop, and turning answers into values or errors.

A resource describes a call as a :class:`Call` (method, path, body, expected type); the
transport sends it, retrying per the :class:`~abaxus_client.RetryPolicy`. For non-event writes
(POST/PATCH) it generates one ``Idempotency-Key`` (uuid4) per logical call and sends it on
every attempt, so a write retried after a lost answer is done once and its stored answer
replayed (spec §16). The sync and async transports share everything but the I/O calls.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Generic, TypeVar

import httpx
import msgspec

from abaxus_client._encoding import decode, encode
from abaxus_client._retry import RetryEvent, RetryPolicy, RetryState, parse_retry_after
from abaxus_client._version import __version__
from abaxus_client.errors import AbaxusError, APIConnectionError, APITimeoutError, error_from_response

__all__ = ["AsyncTransport", "Call", "SyncTransport", "TransportConfig"]

T = TypeVar("T")

# No answer at all: safe to try again (a timed-out write is repeated under the same key).
_RETRYABLE_EXCEPTIONS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


@dataclass(frozen=True)
class Call(Generic[T]):
    """One API call as a resource describes it.

    ``write``: send an ``Idempotency-Key`` (non-event POST/PATCH). ``results_statuses``: error
    statuses whose body is still a result of type ``out`` (batch 207/422 with per-event results).
    """

    method: str
    path: str
    out: type[T]
    body: Any = None
    params: Mapping[str, Any] | None = None
    write: bool = False
    idempotency_key: str | None = None
    results_statuses: frozenset[int] = frozenset()


@dataclass(frozen=True, kw_only=True)
class TransportConfig:
    base_url: str
    api_key: str
    timeout: httpx.Timeout
    retry: RetryPolicy
    on_retry: Callable[[RetryEvent], None] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    rng: random.Random | None = None

    def base_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}", "Accept": "application/json",
                "User-Agent": f"abaxus-client-python/{__version__}", **self.headers}


class _Attempts(Generic[T]):
    """The per-call state both transports drive: request parts, retry budget, last error."""

    def __init__(self, config: TransportConfig, call: Call[T]) -> None:
        self.config, self.call = config, call
        self.state = RetryState(config.retry, rng=config.rng)
        self.headers = config.base_headers()
        self.key = call.idempotency_key or (str(uuid.uuid4()) if call.write else None)
        if self.key is not None:
            self.headers["Idempotency-Key"] = self.key
        self.content: bytes | None = None
        if call.body is not None:
            self.content = encode(call.body)
            self.headers["Content-Type"] = "application/json"
        self.params = {k: _query_value(v) for k, v in (call.params or {}).items() if v is not None}

    def _context(self) -> dict[str, Any]:
        return {"method": self.call.method, "path": self.call.path, "idempotency_key": self.key,
                "attempts": self.state.attempt}

    def _retry_or_raise(self, error: AbaxusError, delay: float | None, status: int | None,
                        exc: BaseException | None = None) -> float:
        if delay is None:
            raise error from exc
        if self.config.on_retry is not None:
            self.config.on_retry(RetryEvent(self.call.method, self.call.path, self.state.attempt, delay, status,
                                            type(exc).__name__ if exc is not None else None))
        return delay

    def on_exception(self, exc: Exception) -> float:
        """Seconds to wait before retrying after no answer, or raise the client's error."""
        if not isinstance(exc, _RETRYABLE_EXCEPTIONS):
            raise APIConnectionError(f"Could not send the request to {self.config.base_url}: {exc!r}. Check "
                                     "base_url (http://host:port, no path).", **self._context()) from exc
        cls = APITimeoutError if isinstance(exc, httpx.TimeoutException) else APIConnectionError
        what = "did not answer in time" if cls is APITimeoutError else "could not be reached"
        error = cls(f"Abaxus at {self.config.base_url} {what} ({type(exc).__name__}: {exc}). Check the server is "
                    "running and base_url; then repeat the call (with the same idempotency_key for a write, so it "
                    "is done once).", **self._context())
        return self._retry_or_raise(error, self.state.next_delay(), None, exc)

    def on_response(self, response: httpx.Response) -> tuple[bool, Any]:
        """``(True, value)`` when done, ``(False, delay)`` to retry; raises the mapped error."""
        status = response.status_code
        body = _json_or_none(response.content)
        success = HTTPStatus.OK <= status < HTTPStatus.MULTIPLE_CHOICES
        if success or (status in self.call.results_statuses and isinstance(body, dict) and "results" in body):
            return True, self._decode(response.content, status)
        headers = {k.lower(): v for k, v in response.headers.items()}
        error = error_from_response(status, body, headers, **self._context())
        if not self.state.retryable_status(status, error.code):
            raise error
        retry_after = parse_retry_after(headers.get("retry-after"))
        return False, self._retry_or_raise(error, self.state.next_delay(retry_after), status)

    def _decode(self, content: bytes, status: int) -> Any:
        if self.call.out is type(None):
            return None
        try:
            return decode(content, self.call.out)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise AbaxusError(f"The server's {status} answer does not match {self.call.out.__name__} ({exc}); the "
                              "server may be older than this client: upgrade it, or report this.",
                              status=status, code="UNEXPECTED_RESPONSE", **self._context()) from exc


def _query_value(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def _json_or_none(content: bytes) -> Any:
    try:
        return msgspec.json.decode(content) if content else None
    except msgspec.DecodeError:
        return None


class SyncTransport:
    """Blocking transport over one pooled ``httpx.Client`` (safe to share between threads)."""

    def __init__(self, config: TransportConfig, http: httpx.Client | None = None) -> None:
        self.config = config
        self._owns_http = http is None
        self.http = http or httpx.Client(base_url=config.base_url, timeout=config.timeout,
                                         limits=httpx.Limits(max_connections=20, max_keepalive_connections=10))

    def request(self, call: Call[T]) -> T:
        tries = _Attempts(self.config, call)
        while True:
            tries.state.begin_attempt()
            try:
                response = self.http.request(call.method, call.path, params=tries.params, content=tries.content,
                                             headers=tries.headers)
            except httpx.HTTPError as exc:
                time.sleep(tries.on_exception(exc))
                continue
            done, value = tries.on_response(response)
            if done:
                return value  # type: ignore[no-any-return]
            time.sleep(value)

    def close(self) -> None:
        if self._owns_http:
            self.http.close()


class AsyncTransport:
    """Non-blocking transport over one pooled ``httpx.AsyncClient``."""

    def __init__(self, config: TransportConfig, http: httpx.AsyncClient | None = None) -> None:
        self.config = config
        self._owns_http = http is None
        self.http = http or httpx.AsyncClient(base_url=config.base_url, timeout=config.timeout,
                                              limits=httpx.Limits(max_connections=20, max_keepalive_connections=10))

    async def request(self, call: Call[T]) -> T:
        tries = _Attempts(self.config, call)
        while True:
            tries.state.begin_attempt()
            try:
                response = await self.http.request(call.method, call.path, params=tries.params,
                                                   content=tries.content, headers=tries.headers)
            except httpx.HTTPError as exc:
                await asyncio.sleep(tries.on_exception(exc))
                continue
            done, value = tries.on_response(response)
            if done:
                return value  # type: ignore[no-any-return]
            await asyncio.sleep(value)

    async def aclose(self) -> None:
        if self._owns_http:
            await self.http.aclose()
