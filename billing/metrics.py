"""Metrics: what to count and how (§5). A key is unique forever; deactivation is final."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from msgspec import UNSET
from sqlalchemy import Connection, Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from abaxus.billing import _validate as v
from abaxus.clock import Clock
from abaxus.errors import Conflict, InvalidInput, NotFound
from abaxus.ids import new_id
from abaxus.money import format_quantity, parse_decimal
from abaxus.schemas.catalog import MetricCreate, MetricOut
from abaxus.store.paging import fetch_page
from abaxus.store.tables import metrics
from abaxus.timefmt import format_ms

__all__ = ["create_metric", "deactivate_metric", "get_metric", "list_metrics", "metric_out"]

_MAX_PERCENTILE = 100


def metric_out(row: dict[str, Any]) -> MetricOut:
    return MetricOut(
        id=row["id"], key=row["key"], name=row["name"], aggregation=row["aggregation"],
        property=row["property"],
        percentile=format_quantity(Decimal(row["percentile"])) if row["percentile"] is not None else None,
        description=row["description"], status=row["status"], created_at=format_ms(row["created_at"]) or "",
    )


def _alias(primary: object, alias: object, name: str, alias_name: str) -> object:
    if primary is not UNSET and alias is not UNSET and primary != alias:
        raise InvalidInput("VALIDATION_ERROR", f"'{name}' and its alias '{alias_name}' differ; send one of them.", alias_name)
    value = primary if primary is not UNSET else alias
    if value is UNSET:
        raise InvalidInput("MISSING_FIELD", f"Add the required field '{name}'.", name)
    return value


def create_metric(engine: Engine, body: MetricCreate, *, clock: Clock) -> MetricOut:
    v.key(body.key, "key")
    name = str(_alias(body.name, body.display_name, "name", "display_name"))
    v.text(name, "name", max_len=200)
    aggregation = str(_alias(body.aggregation, body.aggregation_type, "aggregation", "aggregation_type"))
    if body.description is not None:
        v.text(body.description, "description", min_len=0, max_len=2000)
    if aggregation == "unique_count":
        if body.property is None:
            raise InvalidInput("MISSING_FIELD", "A unique_count metric needs 'property': the event property to count.",
                               "property")
        v.text(body.property, "property", max_len=255)
    elif body.property is not None:
        raise InvalidInput("INVALID_FIELD", "'property' is only for unique_count metrics; remove it.", "property")
    percentile: Decimal | None = None
    if aggregation == "percentile":
        if body.percentile is None:
            raise InvalidInput("MISSING_FIELD", "A percentile metric needs 'percentile', such as 95 or 99.9.", "percentile")
        percentile = parse_decimal(body.percentile, "percentile", max_places=4, lower=Decimal(0),
                                   upper=Decimal("100.00001"), lower_inclusive=False)
        if percentile > _MAX_PERCENTILE:
            raise InvalidInput("VALUE_OUT_OF_RANGE", "'percentile' must be above 0 and at most 100.", "percentile")
    elif body.percentile is not None:
        raise InvalidInput("INVALID_FIELD", "'percentile' is only for percentile metrics; remove it.", "percentile")
    row = {
        "id": new_id("met"), "key": body.key, "name": name, "aggregation": aggregation,
        "property": body.property, "percentile": str(percentile) if percentile is not None else None,
        "description": body.description, "status": "active", "created_at": clock.now_ms(), "deactivated_at": None,
    }
    try:
        with engine.begin() as conn:
            conn.execute(insert(metrics).values(**row))
    except IntegrityError:
        raise Conflict("METRIC_KEY_DUPLICATE", f"Metric key '{body.key}' is taken (keys are unique forever); pick another.",
                       "key") from None
    return metric_out(row)


def _load(conn: Connection, key: str) -> dict[str, Any]:
    row = conn.execute(select(metrics).where(metrics.c.key == key)).mappings().first()
    if row is None:
        raise NotFound("METRIC_NOT_FOUND", f"No metric '{key}'; list them with GET /v1/metrics.")
    return dict(row)


def get_metric(engine: Engine, key: str) -> MetricOut:
    with engine.connect() as conn:
        return metric_out(_load(conn, key))


def all_metrics(engine: Engine) -> dict[str, dict[str, Any]]:
    """Every metric by key: the intake's in-memory view is built from this."""
    with engine.connect() as conn:
        return {r["key"]: dict(r) for r in conn.execute(select(metrics)).mappings()}


def list_metrics(engine: Engine, status: str | None, limit: int, cursor: str | None) -> tuple[list[MetricOut], str | None]:
    query = select(metrics)
    if status is not None:
        if status not in ("active", "inactive"):
            raise InvalidInput("INVALID_FIELD", "status must be active or inactive.", "status")
        query = query.where(metrics.c.status == status)
    with engine.connect() as conn:
        page = fetch_page(conn, query, [metrics.c.created_at, metrics.c.id], kind="metrics", limit=limit, cursor=cursor)
    return [metric_out(r) for r in page.rows], page.next_cursor


def deactivate_metric(engine: Engine, key: str, *, clock: Clock) -> MetricOut:
    with engine.begin() as conn:
        row = _load(conn, key)
        if row["status"] == "active":
            conn.execute(update(metrics).where(metrics.c.key == key).values(status="inactive", deactivated_at=clock.now_ms()))
            row.update(status="inactive")
    return metric_out(row)
