"""The append-only audit trail of invoices (§14): written beside each change, never edited."""

from __future__ import annotations

from typing import Any

import msgspec
from sqlalchemy import Connection, Engine, insert, select

from abaxus.ids import new_id
from abaxus.store.paging import fetch_page
from abaxus.store.tables import audit_entries
from abaxus.timefmt import format_ms

__all__ = ["append", "list_entries"]


def append(conn: Connection, invoice_id: str, type_: str, actor: str, data: dict[str, Any], *, at: int) -> None:
    """Record ``type_`` at ``at``: the instant of the change it stands beside, in its transaction."""
    conn.execute(insert(audit_entries).values(id=new_id("aud"), invoice_id=invoice_id, type=type_, actor=actor,
                                              at=at, data=msgspec.json.encode(data).decode()))


def list_entries(engine: Engine, invoice_id: str, limit: int, cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
    with engine.connect() as conn:
        page = fetch_page(conn, select(audit_entries).where(audit_entries.c.invoice_id == invoice_id),
                          [audit_entries.c.id], kind=f"audit:{invoice_id}", limit=limit, cursor=cursor, descending=False)
    return [{"id": r["id"], "type": r["type"], "actor": r["actor"], "at": format_ms(r["at"]),
             "data": msgspec.json.decode(r["data"])} for r in page.rows], page.next_cursor
