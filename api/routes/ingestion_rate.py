"""Ingestion rate: how many events reached the usage store, minute by minute (the dashboard's overview).

Counted by ``ingested_at`` on ``abaxus.events``, each idempotency key once per minute, so a
void's retraction row or a crash replay does not count an event twice. The scan reads the
``ingested_at`` column of the window only; no ``FINAL`` merge over the whole table.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Response, get
from litestar.params import Parameter

from abaxus.api.contract import errors
from abaxus.api.routes import run, typed
from abaxus.schemas.responses import Out
from abaxus.settings import Settings
from abaxus.store.usage import UsageStore
from abaxus.timefmt import format_ms

__all__ = ["ROUTES", "IngestionMinute", "IngestionRate"]

MINUTE_MS = 60_000


class IngestionMinute(Out, frozen=True, kw_only=True):
    minute: str
    event_count: int


class IngestionRate(Out, frozen=True, kw_only=True):
    from_: str = msgspec.field(name="from")
    to: str
    data: list[IngestionMinute]


def _counts(usage: UsageStore, start: int, end: int) -> dict[int, int]:
    sql = ("SELECT toUnixTimestamp(toStartOfMinute(ingested_at)) * 1000 AS m, uniqExact(idempotency_key) "
           "FROM abaxus.events "
           f"WHERE ingested_at >= fromUnixTimestamp64Milli({int(start)}, 'UTC') "
           f"AND ingested_at < fromUnixTimestamp64Milli({int(end)}, 'UTC') GROUP BY m")
    rows = usage.read_only_query(sql).result_rows
    return {int(m): int(n) for m, n in rows}


@get("/v1/usage/ingestion", tags=["usage"], responses=errors())
async def ingestion_rate(usage: UsageStore, settings: Settings, minutes: Annotated[int, Parameter(
        ge=1, le=1440, description="How many whole minutes, ending with the current one (1–1440).")] = 60,
) -> Response[IngestionRate]:
    """Events that reached the usage store per minute, oldest minute first, every minute listed (0 when none)."""
    end = settings.clock.now_ms() // MINUTE_MS * MINUTE_MS + MINUTE_MS
    start = end - minutes * MINUTE_MS
    counts = await run(_counts, usage, start, end)
    data = [{"minute": format_ms(m), "event_count": counts.get(m, 0)} for m in range(start, end, MINUTE_MS)]
    return typed({"from": format_ms(start), "to": format_ms(end - 1000), "data": data}, IngestionRate)


ROUTES = [ingestion_rate]
