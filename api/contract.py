"""How the typed contract reaches Litestar: strict request bodies and the OpenAPI document.

Litestar documents what a handler declares: a ``data`` parameter becomes the request body, the
return annotation the success response. Abaxus decodes bodies itself (strict: unknown fields
are ``UNKNOWN_FIELD``, ``"5"`` is not ``5``; Litestar's own conversion is lax), so each body
goes through a DTO that runs Abaxus's codec and hands Litestar the struct's schema for the
document. Event batches keep their raw bytes for the columnar fast path; their DTO only
checks media type and size and documents the batch struct.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, Generic, TypeVar

from litestar.dto import AbstractDTO, DTOConfig
from litestar.dto.data_structures import DTOFieldDefinition
from litestar.openapi import OpenAPIConfig
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import Components, OpenAPIType, Reference, Schema, SecurityScheme
from litestar.plugins import OpenAPISchemaPlugin
from litestar.typing import FieldDefinition

from abaxus.errors import AbaxusError
from abaxus.schemas.codec import decode_json
from abaxus.schemas.responses import ErrorBody
from abaxus.schemas.types import JsonNumber, NumberOrString

__all__ = [
    "ERRORS", "FIVE_MB", "NO_AUTH", "ONE_MB", "JsonNumberSchema",
    "RawBody", "StrictBody", "check_media", "errors", "openapi_config",
]

T = TypeVar("T")
ONE_MB = 1_000_000
FIVE_MB = 5_000_000


def check_media(connection: Any, body: bytes, limit: int) -> None:
    """``413`` past the route's size, ``415`` unless the body is ``application/json`` (UTF-8)."""
    if len(body) > limit:
        raise AbaxusError("PAYLOAD_TOO_LARGE", f"The body is {len(body):,} bytes; send at most {limit:,}.", status=413)
    if body.strip():
        media, _, params = connection.headers.get("content-type", "").partition(";")
        charset = params.strip().lower().replace(" ", "")
        if media.strip().lower() != "application/json" or charset not in ("", "charset=utf-8"):
            raise AbaxusError("UNSUPPORTED_MEDIA_TYPE", "Send the body as Content-Type: application/json (UTF-8).",
                              status=415)


class _DocumentedBody(AbstractDTO[T], Generic[T]):
    """Shared DTO plumbing: no generated transfer models, the struct itself is the schema."""

    config = DTOConfig()
    limit = ONE_MB

    @classmethod
    def generate_field_definitions(cls, model_type: type[Any]) -> Generator[DTOFieldDefinition, None, None]:
        yield from ()

    @classmethod
    def detect_nested_field(cls, field_definition: FieldDefinition) -> bool:
        return False

    @classmethod
    def create_for_field_definition(cls, field_definition: FieldDefinition, handler_id: str,
                                    backend_cls: Any = None) -> None:
        return None

    @classmethod
    def create_openapi_schema(cls, field_definition: FieldDefinition, handler_id: str,
                              schema_creator: Any) -> Reference | Schema:
        return schema_creator.for_field_definition(FieldDefinition.from_annotation(cls.model_type))  # type: ignore[no-any-return]

    def decode_builtins(self, value: dict[str, Any]) -> Any:
        raise AbaxusError("UNSUPPORTED_MEDIA_TYPE", "Send the body as Content-Type: application/json (UTF-8).", status=415)

    def data_to_encodable_type(self, data: Any) -> Any:
        return data


class StrictBody(_DocumentedBody[T], Generic[T]):
    """A body decoded strictly into its struct by Abaxus's codec (§1, §3)."""

    def decode_bytes(self, value: bytes) -> Any:
        check_media(self.asgi_connection, value, self.limit)
        return decode_json(value, self.model_type)


class RawBody(_DocumentedBody[T], Generic[T]):
    """An event batch: checked and documented, handed over as bytes for the columnar decoder."""

    limit = FIVE_MB

    def decode_bytes(self, value: bytes) -> Any:
        check_media(self.asgi_connection, value, self.limit)
        return value


class JsonNumberSchema(OpenAPISchemaPlugin):
    """Quantities are exact decimals written as JSON numbers (§4), not the strings Litestar assumes."""

    def is_plugin_supported_field(self, field_definition: FieldDefinition) -> bool:
        return any(isinstance(m, (JsonNumber, NumberOrString)) for m in (field_definition.metadata or ()))

    def to_openapi_schema(self, field_definition: FieldDefinition, schema_creator: Any) -> Schema:
        if any(isinstance(m, JsonNumber) for m in field_definition.metadata or ()):
            return Schema(type=OpenAPIType.NUMBER)
        return Schema(one_of=[Schema(type=OpenAPIType.NUMBER), Schema(type=OpenAPIType.STRING, pattern=r"^-?\d+(\.\d+)?$")])


def _spec(description: str) -> ResponseSpec:
    return ResponseSpec(data_container=ErrorBody, description=description, generate_examples=False)


ERRORS: dict[int, ResponseSpec] = {
    400: _spec("MALFORMED_JSON: the body is not a JSON object in UTF-8."),
    401: _spec("UNAUTHENTICATED: missing, unknown or revoked API key."),
    402: _spec("PAYMENT_FAILED: the card was declined (`decline_code`); the invoice stays issued."),
    403: _spec("INSUFFICIENT_SCOPE: the key's scope does not allow this call."),
    404: _spec("The object the path names does not exist (X_NOT_FOUND), or no such route."),
    409: _spec("A conflict with the object's state or an idempotency key (§3, §16)."),
    413: _spec("PAYLOAD_TOO_LARGE."),
    415: _spec("UNSUPPORTED_MEDIA_TYPE: send application/json."),
    422: _spec("A validation error; `field` names the member at fault."),
    429: _spec("RATE_LIMITED: wait Retry-After seconds."),
    503: _spec("NOT_READY: a store, the queue or the dataflow is down, or the intake is behind; nothing was done."),
}


def errors(*statuses: int) -> dict[int, ResponseSpec]:
    """The error answers an operation can give, beyond those every authenticated call can."""
    return {s: ERRORS[s] for s in sorted({401, 403, 422, 429, 503, *statuses})}


NO_AUTH: list[dict[str, list[str]]] = [{}]


def openapi_config(version: str) -> OpenAPIConfig:
    return OpenAPIConfig(
        title="Abaxus API", version=version, path="/schema", render_plugins=[SwaggerRenderPlugin()],
        description="Self-hosted, usage-based billing: the API v1 contract.",
        security=[{"bearer": []}],
        components=Components(security_schemes={"bearer": SecurityScheme(
            type="http", scheme="bearer", description="An API key: sk_live_… or sk_test_…")}),
        use_handler_docstrings=True,
    )

