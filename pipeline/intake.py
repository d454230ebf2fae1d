"""Validating events at intake and turning the accepted ones into one Arrow record batch.

Each event is checked on its own, so one bad event never fails the rest of a batch; the
accepted ones become columns (never a list of dicts) and one durable log record.

Timestamps are read by msgspec (in C, with the rest of the event) and judged by
``abaxus.timefmt``: the same rules, codes and messages as every other instant in the API.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any, NamedTuple

import msgspec
import pyarrow as pa
import pyarrow.compute as pc

from abaxus.errors import AbaxusError, InvalidInput, NotFound
from abaxus.ids import event_id_for, event_ids_for
from abaxus.pipeline.catalog_view import CatalogView
from abaxus.pipeline.records import INTAKE_SCHEMA
from abaxus.schemas.codec import validation_error
from abaxus.schemas.events import EventBatchTyped, EventIn
from abaxus.schemas.nesting import too_deep
from abaxus.timefmt import in_range, timestamp_error, zoned_ms

__all__ = ["Accepted", "EventValidator", "Rejected"]

MAX_VALUE = Decimal(10) ** 18
FUTURE_MS = 5 * 60 * 1000
MAX_KEY_LENGTH, MAX_PLACES, MAX_BATCH = 255, 10, 1000
MAX_PROPERTIES, MAX_PROPERTIES_BYTES = 50, 8192  # keys; compact JSON
_decoder = msgspec.json.Decoder(EventIn)
_batch_decoder = msgspec.json.Decoder(EventBatchTyped)
# Python's Decimal() forgives what a decimal string must not hold: surrounding spaces
# ("  5 " is 5), underscores ("5_0" is 50), non-ASCII digits. A value sent as a string must be
# a plain decimal; msgspec has already turned it into a Decimal, so the text is checked apart.
_PLAIN_DECIMAL = r"^[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?\Z"
_plain_decimal = re.compile(_PLAIN_DECIMAL)


class _ValueText(msgspec.Struct, gc=False):
    """The fast path's check, in C: numbers pass, strings must match (anything odd: slow path)."""

    value: int | float | Annotated[str, msgspec.Meta(pattern=_PLAIN_DECIMAL)] | None = None


class _BatchValueText(msgspec.Struct, gc=False):
    events: list[_ValueText]


class _RawValue(msgspec.Struct, gc=False):
    """The slow path's check: the value exactly as sent, for one event."""

    value: msgspec.Raw = msgspec.Raw(b"null")


class _RawTimestamp(msgspec.Struct, gc=False):
    """The timestamp as sent, when msgspec refused it: for ``timestamp_error`` to word why."""

    timestamp: Any = None


_batch_value_text = msgspec.json.Decoder(_BatchValueText)
_raw_value = msgspec.json.Decoder(_RawValue)
_raw_timestamp = msgspec.json.Decoder(_RawTimestamp)
_TS = pa.timestamp("ms", tz="UTC")
_DECIMAL = pa.decimal128(38, 10)
_EVENT_SCHEMA = INTAKE_SCHEMA


@dataclass(slots=True)
class Rejected:
    index: int
    error: AbaxusError


class Accepted(NamedTuple):
    """An accepted event's answer (a tuple: a 1,000-event batch makes 1,000 of them)."""

    index: int  # type: ignore[assignment]  # the event's place in the request; shadows tuple.index, never called
    event_id: str
    idempotency_key: str


def _prop_text(v: Any) -> str:
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, float):
        d = Decimal(repr(v))
        return "0" if d == 0 else format(d.normalize(), "f")
    return str(v)


def _properties_map(events: list[EventIn]) -> pa.MapArray:
    """The properties column, built from flat key/value lists (no per-event list of tuples)."""
    offsets = [0]
    names: list[str] = []
    texts: list[str] = []
    for e in events:
        if e.properties:
            for k, v in e.properties.items():
                if v is not None:
                    names.append(k)
                    texts.append(v if type(v) is str else _prop_text(v))
        offsets.append(len(names))
    return pa.MapArray.from_arrays(pa.array(offsets, pa.int32()), pa.array(names, pa.string()),
                                   pa.array(texts, pa.string()))


def _plain_value_text(raw_event: bytes) -> bool:
    """Whether the event's ``value``, if sent as a string, is a plain decimal (see ``_PLAIN_DECIMAL``)."""
    text = bytes(_raw_value.decode(raw_event).value)
    return text[:1] != b'"' or _plain_decimal.match(msgspec.json.decode(text)) is not None


class EventValidator:
    def __init__(self, view: CatalogView) -> None:
        self.view = view

    def _check(self, e: EventIn, now_ms: int, prefix: str) -> tuple[int, Decimal, list[tuple[str, str]]]:  # noqa: PLR0912 - one branch per rule an event must meet
        if not (1 <= len(e.idempotency_key) <= MAX_KEY_LENGTH):
            raise InvalidInput("IDEMPOTENCY_KEY_INVALID", "Send an idempotency_key of 1–255 characters.",
                               f"{prefix}idempotency_key")
        if e.customer_id not in self.view.customers:
            self.view.refresh_if_stale(force=True)
            if e.customer_id not in self.view.customers:
                raise NotFound("CUSTOMER_NOT_FOUND", f"No customer '{e.customer_id}'; create it first.", f"{prefix}customer_id")
        metric = self.view.metrics.get(e.metric_key)
        if metric is None:
            self.view.refresh_if_stale(force=True)
            metric = self.view.metrics.get(e.metric_key)
            if metric is None:
                raise NotFound("METRIC_NOT_FOUND", f"No metric '{e.metric_key}'; create it first.", f"{prefix}metric_key")
        if metric["status"] != "active":
            raise InvalidInput("METRIC_INACTIVE", f"Metric '{e.metric_key}' is deactivated.", f"{prefix}metric_key")
        ms = zoned_ms(e.timestamp, f"{prefix}timestamp")
        if ms > now_ms + FUTURE_MS:  # checked before the range: an event from 2200 on is "ahead"
            raise InvalidInput("TIMESTAMP_IN_FUTURE", "The timestamp is more than 5 minutes ahead; check the sender's clock.",
                               f"{prefix}timestamp")
        in_range(ms, f"{prefix}timestamp")
        value = e.value
        if value is None:
            if metric["aggregation"] not in ("count", "unique_count"):
                raise InvalidInput("MISSING_FIELD", "Add 'value': this metric aggregates values.", f"{prefix}value")
            value = Decimal(1)
        elif not value.is_finite():
            raise InvalidInput("INVALID_DECIMAL", "Send a finite number.", f"{prefix}value")
        else:
            exp = value.as_tuple().exponent
            if isinstance(exp, int) and exp < -MAX_PLACES and value != value.quantize(Decimal(1).scaleb(-MAX_PLACES)):
                raise InvalidInput("INVALID_DECIMAL", "Use at most 10 decimal places.", f"{prefix}value")
            if abs(value) >= MAX_VALUE:
                raise InvalidInput("VALUE_OUT_OF_RANGE", "|value| must be below 10^18.", f"{prefix}value")
        props: list[tuple[str, str]] = []
        if e.properties:
            if len(e.properties) > MAX_PROPERTIES:
                raise InvalidInput("PROPERTIES_INVALID", "Send at most 50 properties.", f"{prefix}properties")
            if len(msgspec.json.encode(e.properties)) > MAX_PROPERTIES_BYTES:
                raise InvalidInput("PROPERTIES_INVALID", "Properties must be at most 8 KB as compact JSON.",
                                   f"{prefix}properties")
            props = [(k, _prop_text(v)) for k, v in e.properties.items() if v is not None]
        return ms, value, props

    def validate_batch(self, body: bytes) -> tuple[list[Accepted], list[Rejected], pa.RecordBatch | None] | None:  # noqa: PLR0911 - one return per shape of answer
        """The columnar fast path for a batch body where every event is valid.

        One msgspec decode of the whole batch, checks over columns, one Arrow batch. Returns
        ``None`` if anything is off, and the caller takes the per-event path, which finds and
        reports each bad event with its own code.
        """
        try:
            events = _batch_decoder.decode(body).events
            _batch_value_text.decode(body)
        except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
            return None
        n = len(events)
        if not 1 <= n <= MAX_BATCH:
            return None
        self.view.refresh_if_stale()
        customers, metrics = self.view.customers, self.view.metrics
        for e in events:
            m = metrics.get(e.metric_key)
            if (m is None or m["status"] != "active" or e.customer_id not in customers or e.value is None
                    or e.timestamp.tzinfo is None or not (1 <= len(e.idempotency_key) <= MAX_KEY_LENGTH)
                    or (e.properties is not None and (len(e.properties) > MAX_PROPERTIES
                                                  or len(msgspec.json.encode(e.properties)) > MAX_PROPERTIES_BYTES))):
                return None
        now = time.time_ns() // 1_000_000
        try:
            # Straight from the Decimal objects: exact, and Arrow refuses more than 10 decimals
            # instead of rounding. (Arrays of str(Decimal) texts convert ~100× slower here.)
            values = pa.array([e.value for e in events], _DECIMAL)
            stamps = pa.array([e.timestamp for e in events], _TS)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
            return None  # > 10 decimals, NaN, out of range: let the slow path name it
        ms = stamps.cast(pa.int64()).to_numpy()
        if (ms < 0).any() or (ms > now + FUTURE_MS).any():
            return None
        if not pc.all(pc.less(pc.abs(values), pa.scalar(MAX_VALUE, pa.decimal128(38, 10)))).as_py():
            return None
        keys = [e.idempotency_key for e in events]
        ids = event_ids_for(keys)
        batch = pa.RecordBatch.from_arrays([
            pa.array(ids, pa.string()),
            pa.array(keys, pa.string()),
            pa.array([e.customer_id for e in events], pa.string()),
            pa.array([e.metric_key for e in events], pa.string()),
            values,
            stamps,
            _properties_map(events),
            pa.repeat(pa.scalar(now, pa.int64()), n).cast(_TS),
        ], schema=_EVENT_SCHEMA)
        return list(map(Accepted, range(n), ids, keys)), [], batch

    def validate(self, raws: list[bytes],
                 prefix_fmt: str = "events.{}.") -> tuple[list[Accepted], list[Rejected], pa.RecordBatch | None]:
        """Validate raw events one by one; return the accepted ones as one record batch."""
        self.view.refresh_if_stale()
        now = time.time_ns() // 1_000_000
        accepted: list[Accepted] = []
        rejected: list[Rejected] = []
        cols: dict[str, list[Any]] = {n: [] for n in _EVENT_SCHEMA.names}
        for i, raw in enumerate(raws):
            prefix = prefix_fmt.format(i) if prefix_fmt else ""
            try:
                try:
                    e = _decoder.decode(raw)
                except msgspec.ValidationError as exc:
                    err = validation_error(str(exc))
                    if err.field == "timestamp" and err.code == "INVALID_FIELD":
                        err = timestamp_error(_raw_timestamp.decode(raw).timestamp, "timestamp")
                    err.field = f"{prefix}{err.field}" if err.field else prefix.rstrip(".") or None
                    raise err from None
                except msgspec.DecodeError:
                    raise AbaxusError("MALFORMED_JSON", "Each event must be a JSON object.", prefix.rstrip(".") or None,
                                      status=400) from None
                except RecursionError:
                    err = too_deep(raw, EventIn)
                    err.field = f"{prefix}{err.field}" if err.field else prefix.rstrip(".") or None
                    raise err from None
                if e.value is not None and not _plain_value_text(raw):
                    raise InvalidInput("INVALID_DECIMAL", "Send value as a JSON number or a plain decimal string such as "
                                       "\"12.5\" (no spaces, underscores or other digits).", f"{prefix}value")
                ms, value, props = self._check(e, now, prefix)
            except AbaxusError as err:
                rejected.append(Rejected(i, err))
                continue
            event_id = event_id_for(e.idempotency_key)
            accepted.append(Accepted(i, event_id, e.idempotency_key))
            cols["event_id"].append(event_id)
            cols["idempotency_key"].append(e.idempotency_key)
            cols["customer_id"].append(e.customer_id)
            cols["metric_key"].append(e.metric_key)
            cols["value"].append(value)
            cols["timestamp"].append(ms)
            cols["properties"].append(props)
        if not accepted:
            return accepted, rejected, None
        n = len(accepted)
        batch = pa.RecordBatch.from_arrays([
            pa.array(cols["event_id"], pa.string()),
            pa.array(cols["idempotency_key"], pa.string()),
            pa.array(cols["customer_id"], pa.string()),
            pa.array(cols["metric_key"], pa.string()),
            pa.array(cols["value"], _DECIMAL),
            pa.array(cols["timestamp"], pa.int64()).cast(_TS),
            pa.array(cols["properties"], pa.map_(pa.string(), pa.string())),
            pa.array([now] * n, pa.int64()).cast(_TS),
        ], schema=_EVENT_SCHEMA)
        return accepted, rejected, batch
