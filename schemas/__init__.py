"""msgspec Structs for every request and response body of the API contract.

Requests forbid unknown fields (``UNKNOWN_FIELD``) and decode prices and quantities as exact
``Decimal`` straight from the JSON text. Responses are built from these structs and encoded
with ``abaxus.schemas.codec``, which writes quantities as plain JSON numbers.
"""

from abaxus.schemas.codec import decode_json, encode_json

__all__ = ["decode_json", "encode_json"]
