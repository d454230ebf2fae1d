"""API keys: secrets shown once, stored as SHA-256 digests, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
from typing import Any

from sqlalchemy import Engine, insert, select, update

from abaxus.billing import _validate as v
from abaxus.clock import Clock, SystemClock
from abaxus.errors import NotFound
from abaxus.ids import new_id
from abaxus.schemas.catalog import ApiKeyOut
from abaxus.store.paging import Page, fetch_page
from abaxus.store.tables import api_keys
from abaxus.timefmt import format_ms

__all__ = ["AuthenticatedKey", "any_keys", "authenticate", "create_key", "list_keys", "revoke_key"]

_ALPHABET = string.ascii_letters + string.digits


class AuthenticatedKey:
    __slots__ = ("id", "mode", "scope")

    def __init__(self, id: str, scope: str, mode: str) -> None:
        self.id, self.scope, self.mode = id, scope, mode


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _out(row: dict[str, Any], secret: str | None = None) -> ApiKeyOut:
    out = ApiKeyOut(
        id=row["id"], name=row["name"], scope=row["scope"], mode=row["mode"],
        created_at=format_ms(row["created_at"]) or "", revoked_at=format_ms(row["revoked_at"]),
    )
    if secret is not None:
        out.secret = secret
    return out


def create_key(engine: Engine, name: str, scope: str, mode: str = "live", secret: str | None = None,
               key_id: str | None = None, *, clock: Clock | None = None) -> ApiKeyOut:
    """Create a key; the returned ``secret`` is the only time it is ever shown.

    ``clock`` defaults to the wall clock for the CLI, which makes keys outside any app.
    """
    v.text(name, "name", max_len=100)
    secret = secret or f"sk_{mode}_" + "".join(secrets.choice(_ALPHABET) for _ in range(40))
    row = {"id": key_id or new_id("key"), "name": name, "scope": scope, "mode": mode,
           "secret_sha256": _digest(secret), "created_at": (clock or SystemClock()).now_ms(), "revoked_at": None}
    with engine.begin() as conn:
        conn.execute(insert(api_keys).values(**row))
    return _out(row, secret)


def authenticate(engine: Engine, secret: str) -> AuthenticatedKey | None:
    digest = _digest(secret)
    with engine.connect() as conn:
        row = conn.execute(select(api_keys).where(api_keys.c.secret_sha256 == digest)).mappings().first()
    if row is None or row["revoked_at"] is not None or not hmac.compare_digest(row["secret_sha256"], digest):
        return None
    return AuthenticatedKey(row["id"], row["scope"], row["mode"])


def any_keys(engine: Engine) -> bool:
    with engine.connect() as conn:
        return conn.execute(select(api_keys.c.id).limit(1)).first() is not None


def list_keys(engine: Engine, limit: int, cursor: str | None) -> tuple[list[ApiKeyOut], str | None]:
    with engine.connect() as conn:
        page: Page = fetch_page(conn, select(api_keys), [api_keys.c.created_at, api_keys.c.id],
                                kind="api_keys", limit=limit, cursor=cursor)
    return [_out(r) for r in page.rows], page.next_cursor


def revoke_key(engine: Engine, key_id: str, *, clock: Clock) -> ApiKeyOut:
    with engine.begin() as conn:
        row = conn.execute(select(api_keys).where(api_keys.c.id == key_id)).mappings().first()
        if row is None:
            raise NotFound("API_KEY_NOT_FOUND", f"No API key {key_id}; list them with GET /v1/api-keys.")
        if row["revoked_at"] is None:
            conn.execute(update(api_keys).where(api_keys.c.id == key_id).values(revoked_at=clock.now_ms()))
        row = conn.execute(select(api_keys).where(api_keys.c.id == key_id)).mappings().one()
    return _out(dict(row))
