"""The one error tree of Abaxus.

Domain code raises these; ``abaxus.api.errors`` alone renders them as the contract's
``{"error": {"code", "message", "field"}}`` body. Anything that is not an ``AbaxusError``
becomes a bland ``500 INTERNAL_ERROR`` there, so nothing internal leaks to a client.

    AbaxusError            code, message, field, status, extra members
    ├── InvalidInput       422 validation family (MISSING_FIELD, INVALID_DECIMAL, …)
    ├── NotFound           404 when the path names the object (422 when the body does)
    ├── Conflict           409
    ├── Unauthenticated    401
    ├── Forbidden          403
    └── Unavailable        503
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AbaxusError",
    "Conflict",
    "Forbidden",
    "InvalidInput",
    "NotFound",
    "Unauthenticated",
    "Unavailable",
]


class AbaxusError(Exception):
    """An error with a stable code the client can branch on."""

    status: int = 400

    def __init__(
        self,
        code: str,
        message: str,
        field: str | None = None,
        *,
        status: int | None = None,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
        if status is not None:
            self.status = status
        self.extra = extra or {}
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        """The JSON body of the contract (§3)."""
        return {"error": {"code": self.code, "message": self.message, "field": self.field, **self.extra}}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code!r}, {self.message!r}, field={self.field!r})"


class InvalidInput(AbaxusError):
    status = 422


class NotFound(AbaxusError):
    """404 when the URL names the missing object; pass ``field`` and it becomes 422."""

    status = 404

    def __init__(self, code: str, message: str, field: str | None = None, **kw: Any) -> None:
        if field is not None and "status" not in kw:
            kw["status"] = 422
        super().__init__(code, message, field, **kw)


class Conflict(AbaxusError):
    status = 409


class Unauthenticated(AbaxusError):
    status = 401

    def __init__(self) -> None:
        super().__init__(
            "UNAUTHENTICATED",
            "Send a valid API key as 'Authorization: Bearer sk_…'; create one with 'abaxus api-keys create'.",
        )


class Forbidden(AbaxusError):
    status = 403


class Unavailable(AbaxusError):
    status = 503
