"""The one place errors become HTTP responses (§3).

``AbaxusError`` renders as itself; Litestar's own routing errors get the contract's codes;
anything else is a server fault: logged with its traceback, answered ``500 INTERNAL_ERROR``
with nothing internal in the body.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, MethodNotAllowedException, NotFoundException, ValidationException

from abaxus.errors import AbaxusError
from abaxus.logging import get_logger
from abaxus.schemas.codec import encode_json

__all__ = ["EXCEPTION_HANDLERS", "error_response"]

log = get_logger("abaxus.api")


def error_response(err: AbaxusError) -> Response[bytes]:
    return Response(content=encode_json(err.body()), status_code=err.status, media_type="application/json",
                    headers=err.headers or None)


def _abaxus(_: Request[Any, Any, Any], exc: AbaxusError) -> Response[bytes]:
    return error_response(exc)


def _http(request: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    if isinstance(exc, NotFoundException):
        return error_response(AbaxusError("NOT_FOUND", f"No route {request.method} {request.url.path}.", status=404))
    if isinstance(exc, MethodNotAllowedException):
        return error_response(AbaxusError("METHOD_NOT_ALLOWED", f"{request.method} is not allowed on {request.url.path}.", status=405))
    if isinstance(exc, ValidationException):
        field = None
        extra = exc.extra if isinstance(exc.extra, list) else []
        if extra and isinstance(extra[0], dict):
            field = extra[0].get("key")
        return error_response(AbaxusError("INVALID_FIELD", "A path or query parameter has the wrong type or value.", field, status=422))
    if exc.status_code == 413:
        return error_response(AbaxusError("PAYLOAD_TOO_LARGE", "Send a smaller body: at most 1 MB (5 MB for batches).", status=413))
    if exc.status_code < 500:
        return error_response(AbaxusError("VALIDATION_ERROR", str(exc.detail), status=exc.status_code))
    return _internal(request, exc)


def _internal(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    log.error("internal_error", method=request.method, path=request.url.path, exc_info=exc)
    return error_response(AbaxusError("INTERNAL_ERROR", "Abaxus hit an internal error; it has been logged. Retry later.", status=500))


EXCEPTION_HANDLERS: dict[Any, Any] = {
    AbaxusError: _abaxus,
    HTTPException: _http,
    Exception: _internal,
}
