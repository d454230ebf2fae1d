"""Exceptions raised by the client, one class per kind of failure the caller handles differently.

Every error the server sends (spec §3: ``{"error": {"code", "message", "field", …}}``) becomes
an :class:`AbaxusError` subclass chosen by HTTP status, carrying ``status``, ``code``,
``message``, ``field`` and any extra members (``existing_invoice_id``, ``decline_code``,
``payment_intent_id``, ``checks``) in ``extra``. Branch on ``code`` for the precise reason;
catch a subclass for the kind.

    AbaxusError                      base of everything raised here
    ├── BadRequestError         400  MALFORMED_JSON (a client bug: report it)
    ├── AuthenticationError     401
    ├── PaymentFailedError      402  + decline_code, payment_intent_id
    ├── PermissionDeniedError   403
    ├── NotFoundError           404 / 405
    ├── ConflictError           409  + existing_invoice_id
    ├── PayloadTooLargeError    413 / 415
    ├── ValidationError         422
    ├── RateLimitedError        429  + retry_after
    ├── InternalServerError     500 and other 5xx
    ├── UnavailableError        503  + retry_after, checks
    └── APIConnectionError      no answer (connection refused, reset, DNS)
        └── APITimeoutError     no answer in time
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

__all__ = [
    "APIConnectionError",
    "APITimeoutError",
    "AbaxusError",
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "InternalServerError",
    "NotFoundError",
    "PayloadTooLargeError",
    "PaymentFailedError",
    "PermissionDeniedError",
    "RateLimitedError",
    "UnavailableError",
    "ValidationError",
    "error_from_response",
]


class AbaxusError(Exception):
    """An API call that did not succeed.

    ``status`` is the HTTP status (``None`` when the server never answered); ``code`` is the
    stable machine-readable reason from spec §3; ``idempotency_key`` is the key the call was
    sent with, so the same logical write can be repeated safely with ``idempotency_key=…``.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        field: str | None = None,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        method: str | None = None,
        path: str | None = None,
        idempotency_key: str | None = None,
        attempts: int = 1,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.field = field
        self.extra: dict[str, Any] = extra or {}
        self.headers: dict[str, str] = headers or {}
        self.method = method
        self.path = path
        self.idempotency_key = idempotency_key
        self.attempts = attempts

    def __str__(self) -> str:
        where = f" ({self.method} {self.path})" if self.method else ""
        head = f"{self.status} {self.code}: " if self.status is not None else ""
        field = f" [field: {self.field}]" if self.field else ""
        tries = f" after {self.attempts} attempts" if self.attempts > 1 else ""
        return f"{head}{self.message}{field}{where}{tries}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status!r}, code={self.code!r}, field={self.field!r})"


class BadRequestError(AbaxusError):
    """400: the body was not JSON. The client always sends JSON, so this is worth reporting."""


class AuthenticationError(AbaxusError):
    """401: the API key is missing, unknown or revoked. Create one with ``abaxus api-keys create``."""


class PaymentFailedError(AbaxusError):
    """402: the card was declined; the invoice stays ``issued`` and may be charged again."""

    @property
    def decline_code(self) -> str | None:
        return self.extra.get("decline_code")

    @property
    def payment_intent_id(self) -> str | None:
        return self.extra.get("payment_intent_id")


class PermissionDeniedError(AbaxusError):
    """403: the key's scope (admin, ingest, read) does not allow this call; use a broader key."""


class NotFoundError(AbaxusError):
    """404: the object named in the path does not exist (or, 405, the method is not allowed)."""


class ConflictError(AbaxusError):
    """409: the write clashes with the current state (duplicate id, invoice already exists, …)."""

    @property
    def existing_invoice_id(self) -> str | None:
        return self.extra.get("existing_invoice_id")


class PayloadTooLargeError(AbaxusError):
    """413 / 415: split the request (at most 1,000 events or 5 MB per batch, 1 MB otherwise)."""


class ValidationError(AbaxusError):
    """422: the request broke a rule; ``field`` names the offending body path or parameter."""


class _RetryAfter(AbaxusError):
    @property
    def retry_after(self) -> float | None:
        """Seconds the server asked us to wait (``Retry-After``), if it said."""
        raw = self.headers.get("retry-after")
        try:
            return float(raw) if raw is not None else None
        except ValueError:
            return None


class RateLimitedError(_RetryAfter):
    """429: over the key's requests per minute; raised only once the retry budget is spent."""


class InternalServerError(AbaxusError):
    """500 (or another 5xx): a server fault, never retried automatically; see the server log."""


class UnavailableError(_RetryAfter):
    """503: a store, the queue or the dataflow is down or behind; nothing was done. Retry later."""

    @property
    def checks(self) -> dict[str, str] | None:
        return self.extra.get("checks")


class APIConnectionError(AbaxusError):
    """The server never answered (refused, reset, DNS) within the retry budget."""


class APITimeoutError(APIConnectionError):
    """The server did not answer in time; a write may or may not have happened: repeat it with
    the same ``idempotency_key`` to find out without doing it twice."""


_BY_STATUS: dict[int, type[AbaxusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    402: PaymentFailedError,
    403: PermissionDeniedError,
    404: NotFoundError,
    405: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    415: PayloadTooLargeError,
    422: ValidationError,
    429: RateLimitedError,
    503: UnavailableError,
}


def error_class(status: int) -> type[AbaxusError]:
    """The exception class for an HTTP status."""
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    if status >= HTTPStatus.INTERNAL_SERVER_ERROR:
        return InternalServerError
    return AbaxusError


def error_from_response(status: int, body: Any, headers: dict[str, str], **context: Any) -> AbaxusError:
    """Build the exception for an error response; a body that is not the §3 shape still yields one."""
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        code = err.get("code") if isinstance(err.get("code"), str) else None
        message = str(err.get("message") or code or f"HTTP {status}")
        field = err.get("field") if isinstance(err.get("field"), str) else None
        extra = {k: v for k, v in err.items() if k not in ("code", "message", "field")}
    else:
        code, field, extra = None, None, {}
        message = (f"HTTP {status} without an Abaxus error body; check that base_url points at an Abaxus "
                   "server and not at a proxy or another service.")
    return error_class(status)(message, status=status, code=code, field=field, extra=extra, headers=headers, **context)
