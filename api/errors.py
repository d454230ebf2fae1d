"""The one place errors become HTTP responses (§3).

``AbaxusError`` renders as itself; Litestar's own routing errors get the contract's codes;
anything else is a server fault: logged with its traceback, answered ``500 INTERNAL_ERROR``
with nothing internal in the body.
"""

from __future__ import annotations

import re
from http import HTTPStatus
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, MethodNotAllowedException, NotFoundException, ValidationException

from abaxus.errors import AbaxusError
from abaxus.logging import get_logger
from abaxus.schemas.codec import empty_body_error, encode_json

__all__ = ["EXCEPTION_HANDLERS", "as_abaxus_error", "error_response"]

log = get_logger("abaxus.api")


def error_response(err: AbaxusError) -> Response[bytes]:
    return Response(content=encode_json(err.body()), status_code=err.status, media_type="application/json",
                    headers=err.headers or None)


def _abaxus(_: Request[Any, Any, Any], exc: AbaxusError) -> Response[bytes]:
    return error_response(exc)


_MISSING_PARAM = re.compile(r"Missing required (?P<kind>(?:query |header |path |cookie )?)parameter '(?P<name>[^']+)'")


def as_abaxus_error(exc: BaseException, method: str, path: str) -> AbaxusError:  # noqa: PLR0911 - one return per kind of error mapped
    """The contract's error for any exception: the one mapping, for the body and for the metrics."""
    if isinstance(exc, AbaxusError):
        return exc
    if isinstance(exc, NotFoundException):
        return AbaxusError("NOT_FOUND", f"No route {method} {path}.", status=404)
    if isinstance(exc, MethodNotAllowedException):
        allow = {k.lower(): v for k, v in (exc.headers or {}).items()}.get("allow")
        return AbaxusError("METHOD_NOT_ALLOWED", f"{method} is not allowed on {path}; use {allow or 'another method'}.",
                           status=405, headers={"Allow": allow} if allow else None)
    if isinstance(exc, ValidationException):
        extra = exc.extra if isinstance(exc.extra, list) else []
        first = extra[0] if extra and isinstance(extra[0], dict) else {}
        if first.get("source") == "body" and first.get("key") == "data":
            # A body handler's ``data`` is missing only when the body was empty and {} would not do.
            return empty_body_error(None)
        missing = _MISSING_PARAM.search(str(exc.detail))
        if missing:
            name = missing.group("name")
            return AbaxusError("MISSING_FIELD", f"Add the {missing.group('kind') or ''}parameter '{name}'.".replace("  ", " "),
                               name, status=422)
        key = first.get("key")
        reason = str(first.get("message") or "wrong type or value").rstrip(".")
        return AbaxusError("INVALID_FIELD", f"The parameter '{key}' is invalid: {reason}." if key else
                           "A path or query parameter has the wrong type or value.", key, status=422)
    if isinstance(exc, HTTPException) and exc.status_code == HTTPStatus.REQUEST_ENTITY_TOO_LARGE:
        return AbaxusError("PAYLOAD_TOO_LARGE", "Send a smaller body: at most 1 MB (5 MB for batches).", status=413)
    if isinstance(exc, HTTPException) and exc.status_code < HTTPStatus.INTERNAL_SERVER_ERROR:
        return AbaxusError("VALIDATION_ERROR", str(exc.detail), status=exc.status_code)
    return AbaxusError("INTERNAL_ERROR", "Abaxus hit an internal error; it has been logged. Retry later.", status=500)


def _http(request: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    err = as_abaxus_error(exc, request.method, request.url.path)
    return _internal(request, exc) if err.status >= HTTPStatus.INTERNAL_SERVER_ERROR else error_response(err)


def _internal(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    log.error("internal_error", method=request.method, path=request.url.path, exc_info=exc)
    return error_response(as_abaxus_error(exc, request.method, request.url.path))


EXCEPTION_HANDLERS: dict[Any, Any] = {
    AbaxusError: _abaxus,
    HTTPException: _http,
    Exception: _internal,
}
