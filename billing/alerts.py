"""Usage alerts: a threshold on a customer's usage or spend in its current billing period.

The ``AlertEvaluator`` thread looks at every active alert each ``alert_interval_seconds``
(10 s by default, so a crossing fires well within 60 s of the usage that causes it being
stored). An alert's period is the current period (§8) of the customer's oldest subscription
that is billable now; its value there is

* ``usage``: the metric's quantity (its aggregation, §5) over the period, as the usage
  summary (§10) counts it;
* ``spend``: the gross of the period's charge lines priced as an invoice at the period's end
  would price them (§6, §12) from the usage stored so far, in the plan currency's minor
  units, before proration credits and other commercial terms; with a ``metric_key``, only
  the lines charging that metric.

At or above the threshold the alert fires, at most once per period: a compare-and-set on
``triggered_period_start`` records the firing and, in the same transaction, writes the
``alert.triggered`` event to the outbox, so two evaluators (two servers on one PostgreSQL)
cannot both fire it, and a crash cannot fire it without its webhook.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Engine, insert, or_, select, update

from abaxus.billing import outbox
from abaxus.billing.customers import load_customer
from abaxus.billing.plans import load_version
from abaxus.billing.pricing import billable_windows, load_specs, price_windows
from abaxus.billing.subscriptions import period_containing
from abaxus.billing.timeline import Timeline, load_amendments
from abaxus.billing.usage import summary_rows
from abaxus.clock import Clock
from abaxus.errors import InvalidInput, NotFound
from abaxus.ids import new_id
from abaxus.logging import get_logger
from abaxus.money import format_quantity, parse_decimal
from abaxus.schemas.webhooks import AlertCreate, AlertOut
from abaxus.settings import Settings
from abaxus.store.paging import fetch_page
from abaxus.store.tables import alerts, metrics, subscriptions
from abaxus.store.usage import UsageStore
from abaxus.timefmt import format_ms

__all__ = ["AlertEvaluator", "create_alert", "disable_alert", "get_alert", "list_alerts"]

log = get_logger("abaxus.alerts")
_MAX_QUANTITY = Decimal(10) ** 18
_MAX_AMOUNT = Decimal(2) ** 63


def alert_out(row: Any) -> AlertOut:
    value = row["triggered_value"]
    return AlertOut(
        id=row["id"], customer_id=row["customer_id"], metric_key=row["metric_key"], kind=row["kind"],
        threshold=format_quantity(Decimal(row["threshold"])), status=row["status"],
        created_at=format_ms(row["created_at"]) or "", disabled_at=format_ms(row["disabled_at"]),
        last_triggered_at=format_ms(row["last_triggered_at"]),
        triggered_period_start=format_ms(row["triggered_period_start"]),
        triggered_period_end=format_ms(row["triggered_period_end"]),
        triggered_value=format_quantity(Decimal(value)) if value is not None else None)


def _threshold(kind: str, value: Decimal) -> Decimal:
    if kind == "usage":
        return parse_decimal(value, "threshold", max_places=10, lower=Decimal(0), lower_inclusive=False,
                             upper=_MAX_QUANTITY)
    if value != value.to_integral_value():
        raise InvalidInput("INVALID_FIELD", "A spend threshold is an integer amount in minor units (4900 = 49.00 usd).",
                           "threshold")
    return parse_decimal(value.to_integral_value(), "threshold", max_places=0, lower=Decimal(0), lower_inclusive=False,
                         upper=_MAX_AMOUNT)


def create_alert(engine: Engine, body: AlertCreate, *, clock: Clock) -> AlertOut:
    threshold = _threshold(body.kind, body.threshold)
    if body.kind == "usage" and body.metric_key is None:
        raise InvalidInput("MISSING_FIELD", "A usage alert watches one metric: add 'metric_key'.", "metric_key")
    row = {"id": new_id("alr"), "customer_id": body.customer_id, "metric_key": body.metric_key, "kind": body.kind,
           "threshold": str(format_quantity(threshold)), "status": "active", "created_at": clock.now_ms(), "disabled_at": None,
           "last_triggered_at": None, "triggered_period_start": None, "triggered_period_end": None,
           "triggered_value": None}
    with engine.begin() as conn:
        load_customer(conn, body.customer_id, "customer_id")
        if body.metric_key is not None and conn.execute(
                select(metrics.c.id).where(metrics.c.key == body.metric_key)).first() is None:
            raise NotFound("METRIC_NOT_FOUND", f"No metric '{body.metric_key}'.", "metric_key")
        conn.execute(insert(alerts).values(**row))
    return alert_out(row)


def _load(conn: Connection, alert_id: str) -> dict[str, Any]:
    row = conn.execute(select(alerts).where(alerts.c.id == alert_id)).mappings().first()
    if row is None:
        raise NotFound("ALERT_NOT_FOUND", f"No alert '{alert_id}'.")
    return dict(row)


def get_alert(engine: Engine, alert_id: str) -> AlertOut:
    with engine.connect() as conn:
        return alert_out(_load(conn, alert_id))


def list_alerts(engine: Engine, customer_id: str | None, limit: int, cursor: str | None) -> tuple[list[AlertOut], str | None]:
    query = select(alerts)
    if customer_id is not None:
        query = query.where(alerts.c.customer_id == customer_id)
    with engine.connect() as conn:
        page = fetch_page(conn, query, [alerts.c.created_at, alerts.c.id], kind="alerts", limit=limit, cursor=cursor)
    return [alert_out(r) for r in page.rows], page.next_cursor


def disable_alert(engine: Engine, alert_id: str, *, clock: Clock) -> AlertOut:
    """Stop evaluating the alert, for good; its record of firing stays. Repeatable."""
    with engine.begin() as conn:
        row = _load(conn, alert_id)
        if row["status"] == "active":
            now = clock.now_ms()
            conn.execute(update(alerts).where(alerts.c.id == alert_id).values(status="disabled", disabled_at=now))
            row.update(status="disabled", disabled_at=now)
    return alert_out(row)


# ---- evaluation --------------------------------------------------------------------------
class _Period:
    """A customer's current billing period: the subscription it belongs to and its bounds."""

    def __init__(self, sub: dict[str, Any], timeline: Timeline, start: int, end: int) -> None:
        self.sub, self.timeline, self.start, self.end = sub, timeline, start, end


def current_period(conn: Connection, customer_id: str, now: int) -> _Period | None:
    """The current period of the customer's oldest subscription billable at ``now`` (None if none is)."""
    rows = [dict(r) for r in conn.execute(
        select(subscriptions).where(subscriptions.c.customer_id == customer_id)
        .order_by(subscriptions.c.start_date, subscriptions.c.created_at, subscriptions.c.id)).mappings()]
    changes = load_amendments(conn, [r["id"] for r in rows])
    for sub in rows:
        timeline = Timeline(sub, changes[sub["id"]])
        if billable_windows(conn, sub, now, timeline):
            months = load_version(conn, sub["plan_id"], sub["plan_version"]).months
            start, end = period_containing(sub["start_date"], months, now)
            return _Period(sub, timeline, start, end)
    return None


class AlertEvaluator:
    """A daemon thread that evaluates every active alert each interval (see the module docstring)."""

    def __init__(self, engine: Engine, usage: UsageStore, metrics: Callable[[], dict[str, dict[str, Any]]],
                 settings: Settings) -> None:
        self.engine, self.usage, self.metrics = engine, usage, metrics
        self.clock = settings.clock
        self.interval_s = settings.alert_interval_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="alert-evaluator", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(60)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.evaluate_once()
            except Exception as exc:  # a store is down: the next round tries again
                log.error("alert_evaluation_failed", exc_info=exc)

    def evaluate_once(self, now: int | None = None) -> list[dict[str, Any]]:
        """One round over every active alert; the ``alert.triggered`` data of those that fired.

        ``now`` is the instant whose billing period counts (default: the clock).
        """
        now = self.clock.now_ms() if now is None else now
        with self.engine.connect() as conn:
            rows = [dict(r) for r in conn.execute(select(alerts).where(alerts.c.status == "active")
                                                  .order_by(alerts.c.customer_id, alerts.c.id)).mappings()]
        by_customer: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            by_customer.setdefault(row["customer_id"], []).append(row)
        fired = []
        for customer_id, group in by_customer.items():
            try:
                fired.extend(self._evaluate_customer(customer_id, group, now))
            except Exception as exc:  # one customer's trouble (a plan gone, a bad query) spares the others
                log.error("alert_evaluation_failed", customer_id=customer_id, exc_info=exc)
        return fired

    def _evaluate_customer(self, customer_id: str, group: list[dict[str, Any]], now: int) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            period = current_period(conn, customer_id, now)
        if period is None:
            return []
        waiting = [a for a in group if a["triggered_period_start"] != period.start]
        if not waiting:
            return []
        spend: tuple[str, list[dict[str, Any]]] | None = None
        usage: dict[str, Decimal] = {}
        fired = []
        for alert in waiting:
            currency = None
            if alert["kind"] == "usage":
                key = alert["metric_key"]
                if key not in usage:
                    usage[key] = self._usage(customer_id, key, period)
                value = usage[key]
            else:
                if spend is None:
                    spend = self._spend_lines(period)
                currency, lines = spend
                value = Decimal(sum(int(li["amount"]) for li in lines
                                    if alert["metric_key"] is None or li["metric_key"] == alert["metric_key"]))
            if value >= Decimal(alert["threshold"]):
                data = self._fire(alert, period, value, currency, now)
                if data is not None:
                    fired.append(data)
        return fired

    def _usage(self, customer_id: str, metric_key: str, period: _Period) -> Decimal:
        known = self.metrics()
        if metric_key not in known:  # created moments ago in another process: counted next round
            return Decimal(0)
        rows = summary_rows(self.usage, known, customer_id, [metric_key], period.start, period.end)
        return Decimal(rows[0]["quantity"]) if rows else Decimal(0)

    def _spend_lines(self, period: _Period) -> tuple[str, list[dict[str, Any]]]:
        with self.engine.connect() as conn:
            windows = billable_windows(conn, period.sub, period.end - 1, period.timeline)
            specs = load_specs(conn, windows)
        if not windows:
            return "", []
        priced = price_windows(self.usage, windows, specs, None)[0]
        return windows[-1].plan.currency, priced.lines

    def _fire(self, alert: dict[str, Any], period: _Period, value: Decimal, currency: str | None,
              now: int) -> dict[str, Any] | None:
        a = alerts.c
        data = {"alert_id": alert["id"], "customer_id": alert["customer_id"], "kind": alert["kind"],
                "metric_key": alert["metric_key"], "threshold": format_quantity(Decimal(alert["threshold"])),
                "value": format_quantity(value), "currency": currency, "subscription_id": period.sub["id"],
                "period_start": format_ms(period.start), "period_end": format_ms(period.end - 1000),
                "triggered_at": format_ms(now)}
        with self.engine.begin() as conn:
            won = conn.execute(update(alerts).where(
                (a.id == alert["id"]) & (a.status == "active")
                & or_(a.triggered_period_start.is_(None), a.triggered_period_start != period.start))
                .values(last_triggered_at=now, triggered_period_start=period.start, triggered_period_end=period.end - 1000,
                        triggered_value=str(format_quantity(value)))).rowcount
            if won != 1:  # another evaluator fired it for this period, or it was disabled meanwhile
                return None
            # Sent as of the clock's now: ``now`` may be an instant evaluated ahead (evaluate_once).
            data["event_id"] = outbox.emit(conn, "alert.triggered", data, now=self.clock.now_ms())
        log.info("alert_triggered", alert_id=alert["id"], value=str(value), period_start=data["period_start"])
        return data
