"""Validating events at intake and turning the accepted ones into one Arrow record batch.

Each event is checked on its own, so one bad event never fails the rest of a batch; the
accepted ones become columns (never a list of dicts) and one durable log record.

Timestamps are read by msgspec (in C, with the rest of the event) and judged by
``abaxus.timefmt``: the same rules, codes and messages as every other instant in the API.

Two paths give the same answer for a batch whose every event is valid. ``validate_batch``
(the fast path) runs no Python per event: msgspec's constraints check lengths, counts and
offsets in C while decoding, and the rest is checked over whole columns (set inclusion,
Arrow conversions and min/max); on the first doubt it returns ``None``. ``validate`` (the
slow path) then reads the events one by one and names each bad one with its own code.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from itertools import accumulate, chain, compress, count, repeat
from operator import attrgetter
from typing import Annotated, Any, NamedTuple, overload

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from abaxus.clock import Clock, SystemClock
from abaxus.errors import AbaxusError, InvalidInput, NotFound
from abaxus.ids import event_id_array, event_id_for
from abaxus.pipeline.catalog_view import CatalogView
from abaxus.pipeline.records import INTAKE_SCHEMA
from abaxus.schemas.codec import validation_error
from abaxus.schemas.events import EventIn
from abaxus.schemas.nesting import too_deep
from abaxus.timefmt import MAX_MS, in_range, timestamp_error, zoned_ms

__all__ = ["Accepted", "AcceptedBatch", "EventValidator", "Rejected"]

MAX_VALUE = Decimal(10) ** 18
FUTURE_MS = 5 * 60 * 1000
MAX_KEY_LENGTH, MAX_PLACES, MAX_BATCH = 255, 10, 1000
MAX_PROPERTIES, MAX_PROPERTIES_BYTES = 50, 8192  # keys; compact JSON
_decoder = msgspec.json.Decoder(EventIn)
# Python's Decimal() forgives what a decimal string must not hold: surrounding spaces
# ("  5 " is 5), underscores ("5_0" is 50), non-ASCII digits. A value sent as a string must be
# a plain decimal; msgspec has already turned it into a Decimal, so the text is checked apart.
_PLAIN_DECIMAL = r"^[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?\Z"
_plain_decimal = re.compile(_PLAIN_DECIMAL)


_PropertyValue = str | int | float | bool | None  # as EventIn.properties has them


class _FastEvent(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, gc=False):
    """``EventIn`` with the rules msgspec can check in C while it decodes (fast path only).

    The key's length, the number of properties and the timestamp's offset fail the decode,
    so a batch with such an event goes to the slow path without a Python check per event.
    The value stays raw: its text is checked and decoded once for the whole batch (see
    ``_values_column``). Absent properties decode as ``{}`` (a fresh dict each time), so the column
    is built with no test per event for None.
    """

    customer_id: str
    metric_key: str
    timestamp: Annotated[datetime, msgspec.Meta(tz=True)]
    idempotency_key: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_KEY_LENGTH)]
    value: msgspec.Raw = msgspec.Raw(b"null")
    properties: Annotated[dict[str, _PropertyValue], msgspec.Meta(max_length=MAX_PROPERTIES)] | None = {}


class _FastBatch(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, gc=False):
    events: Annotated[list[_FastEvent], msgspec.Meta(min_length=1, max_length=MAX_BATCH)]


_fast_decoder = msgspec.json.Decoder(_FastBatch)
# The batch's raw values are joined as one JSON array (see ``_values_column``). Two shapes most
# batches have convert in Arrow without a Decimal object per value: JSON integers (int64, then
# an exact cast), and strings of at most 18 integer digits and 10 places with no sign but a
# minus, which Arrow parses exactly.
_ints_decoder = msgspec.json.Decoder(list[int | None])
_strings_decoder = msgspec.json.Decoder(list[str])
_SHORT_DECIMALS = re.compile(rb'\["-?[0-9]{1,18}(?:\.[0-9]{1,10})?"(?:,"-?[0-9]{1,18}(?:\.[0-9]{1,10})?")*\]')
# Any other array is decoded by the same Decimal decoder as ``EventIn.value`` (so each Decimal
# is the one the slow path reads), after one match, if it holds a string at all, against this
# grammar: numbers and null as msgspec validated them, strings only as plain decimals with no
# escape (an escaped one goes to the slow path, which unescapes it first).
_values_decoder = msgspec.json.Decoder(list[Decimal | None])
_VALUES = re.compile(rb'\[(?:null|[-+.0-9eE]+|"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")'
                     rb'(?:,(?:null|[-+.0-9eE]+|"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?"))*\]')
_KEY, _CUSTOMER, _METRIC, _VALUE, _TIMESTAMP, _PROPERTIES = (attrgetter(name) for name in (
    "idempotency_key", "customer_id", "metric_key", "value", "timestamp", "properties"))
_COUNTING = frozenset({"count", "unique_count"})  # aggregations for which a missing value counts 1


class _RawValue(msgspec.Struct, gc=False):
    """The slow path's check: the value exactly as sent, for one event."""

    value: msgspec.Raw = msgspec.Raw(b"null")


class _RawTimestamp(msgspec.Struct, gc=False):
    """The timestamp as sent, when msgspec refused it: for ``timestamp_error`` to word why."""

    timestamp: Any = None


_raw_value = msgspec.json.Decoder(_RawValue)
_raw_timestamp = msgspec.json.Decoder(_RawTimestamp)
_TS = pa.timestamp("ms", tz="UTC")
_TS_US = pa.timestamp("us", tz="UTC")
_stamps_encoder = msgspec.json.Encoder()
_stamp_texts = msgspec.json.Decoder(list[str])
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


_RESULT_HEAD, _RESULT_MID, _RESULT_TAIL = b'{"index":', b',"event_id":"', b'","status":"queued"},'


class AcceptedBatch(Sequence[Accepted]):
    """The fast path's accepted events (all of a batch, in order) as columns.

    A 1,000-event answer built from 1,000 tuples, then dicts, then encoded, cost more than
    validating the batch; ``results_json`` writes the ``results`` array straight from the
    id column's bytes instead. Indexing still gives ``Accepted`` for the other callers.
    """

    def __init__(self, ids: pa.StringArray, keys: list[str]) -> None:
        self.ids, self.keys = ids, keys

    def __len__(self) -> int:
        return len(self.keys)

    @overload
    def __getitem__(self, i: int) -> Accepted: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[Accepted]: ...
    def __getitem__(self, i: int | slice) -> Accepted | Sequence[Accepted]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        return Accepted(i, self.ids[i].as_py(), self.keys[i])

    def __iter__(self) -> Iterator[Accepted]:
        return map(tuple.__new__, repeat(Accepted), zip(count(), self.ids.to_pylist(), self.keys))

    def results_json(self) -> bytes:
        """``[{"index":0,"event_id":"evt_…","status":"queued"},…]``: records of one index width at a time, in numpy."""
        n = len(self)
        width = len(self.ids[0].as_py()) if n else 0
        ids = np.frombuffer(self.ids.buffers()[2], np.uint8, n * width).reshape(n, width)  # fresh array: no offset
        parts = [b"["]
        low, digits = 0, 1
        while low < n:
            high = min(n, 10 ** digits)
            index = np.arange(low, high)
            at = len(_RESULT_HEAD)
            rec = np.empty((high - low, at + digits + len(_RESULT_MID) + width + len(_RESULT_TAIL)), np.uint8)
            rec[:, :at] = np.frombuffer(_RESULT_HEAD, np.uint8)
            for d in range(digits):
                rec[:, at + d] = 48 + (index // 10 ** (digits - 1 - d)) % 10
            at += digits
            rec[:, at:at + len(_RESULT_MID)] = np.frombuffer(_RESULT_MID, np.uint8)
            at += len(_RESULT_MID)
            rec[:, at:at + width] = ids[low:high]
            rec[:, at + width:] = np.frombuffer(_RESULT_TAIL, np.uint8)
            parts.append(rec.tobytes())
            low, digits = high, digits + 1
        out = b"".join(parts)
        return out[:-1] + b"]" if n else b"[]"


def _prop_text(v: Any) -> str:
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, float):
        d = Decimal(repr(v))
        return "0" if d == 0 else format(d.normalize(), "f")
    return str(v)


def _properties_map(props: list[dict[str, Any]]) -> pa.MapArray:
    """The properties column for any values, each written as the slow path writes it, nulls left out."""
    offsets = [0]
    names: list[str] = []
    texts: list[str] = []
    for p in props:
        if p:
            for k, v in p.items():
                if v is not None:
                    names.append(k)
                    texts.append(v if type(v) is str else _prop_text(v))
        offsets.append(len(names))
    return pa.MapArray.from_arrays(pa.array(offsets, pa.int32()), pa.array(names, pa.string()),
                                   pa.array(texts, pa.string()))


def _fast_properties(props: list[dict[str, Any]]) -> pa.MapArray | None:
    """The fast path's properties column, or None if an event's properties pass 8 KB as compact JSON.

    When every value is a string (the usual case) the column is made of three flat lists in
    C-level passes, and the 8 KB rule is bounded from the UTF-8 lengths Arrow already holds:
    msgspec writes a character in at most 6 bytes for each byte it takes in UTF-8, so
    ``2 + 6·(bytes + pairs)`` is never less than the compact JSON. Only an event whose bound
    passes 8 KB is encoded for the exact size. Other values (numbers, booleans, null) go
    through the per-event loop, which writes them as the slow path does.
    """
    n = len(props)
    try:
        counts = list(map(len, props))
    except TypeError:  # "properties": null, sent as such: the same as none
        props = [p or {} for p in props]
        counts = list(map(len, props))
    try:
        names = pa.array(list(chain.from_iterable(props)), pa.string())
        texts = pa.array(list(chain.from_iterable(map(dict.values, props))), pa.string())
    except (pa.ArrowTypeError, pa.ArrowInvalid):
        texts = None
    if texts is None or texts.null_count:
        if max(map(len, map(msgspec.json.encode, props))) > MAX_PROPERTIES_BYTES:
            return None
        return _properties_map(props)
    offsets = np.fromiter(accumulate(counts, initial=0), np.int32, n + 1)
    pairs = len(names)
    if pairs:
        positions = 6 * (_string_offsets(names) + _string_offsets(texts) + np.arange(pairs + 1))
        bounds = 2 + positions[offsets[1:]] - positions[offsets[:-1]]
        for i in np.flatnonzero(bounds > MAX_PROPERTIES_BYTES).tolist():
            if len(msgspec.json.encode(props[i])) > MAX_PROPERTIES_BYTES:
                return None
    return pa.MapArray.from_arrays(pa.array(offsets, pa.int32()), names, texts)


def _plain_value_text(raw_event: bytes) -> bool:
    """Whether the event's ``value``, if sent as a string, is a plain decimal (see ``_PLAIN_DECIMAL``)."""
    text = bytes(_raw_value.decode(raw_event).value)
    return text[:1] != b'"' or _plain_decimal.match(msgspec.json.decode(text)) is not None


def _values_column(text: bytes) -> pa.Decimal128Array | None:
    """The values, sent as the JSON array ``text``, as the decimal column; None if one is off.

    Integers and short decimal strings take Arrow's exact conversions; any other batch is
    decoded to Decimals by the decoder ``EventIn.value`` uses, so each value is the one the
    slow path reads, and Arrow refuses more than 10 places (unless only zeros), NaN and
    infinities instead of rounding. A missing value stays null here (see ``validate_batch``).
    """
    try:
        return pa.array(_ints_decoder.decode(text), pa.int64()).cast(_DECIMAL)
    except (msgspec.ValidationError, pa.ArrowInvalid, OverflowError):
        pass  # not all integers, or one past int64 (too large anyway: left to the general way)
    if _SHORT_DECIMALS.fullmatch(text) is not None:
        try:
            return pa.array(_strings_decoder.decode(text), pa.string()).cast(_DECIMAL)
        except pa.ArrowInvalid:  # 28 digits at most always fit; were Arrow ever to refuse one, the general way
            pass
    if b'"' in text and _VALUES.fullmatch(text) is None:
        return None  # a string that is not a plain decimal, or one with an escape
    try:
        return pa.array(_values_decoder.decode(text), _DECIMAL)
    except (msgspec.ValidationError, pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
        return None


def _stamps_column(stamps: list[datetime]) -> pa.TimestampArray:
    """The timestamps as milliseconds since the epoch, UTC, floored as ``pa.array`` has them.

    ``pa.array`` calls ``utcoffset()`` on every aware datetime (~0.5 µs each); written back
    as RFC 3339 by msgspec and parsed by Arrow in one pass it costs a third of that. Arrow
    parses at most microseconds, which msgspec never exceeds; milliseconds are then the floor
    (as ``pa.array`` has them: -0.5 ms is -1, before the epoch, not 0). Should Arrow refuse a
    text, the per-object conversion answers.
    """
    try:
        texts = pa.array(_stamp_texts.decode(_stamps_encoder.encode(stamps)), pa.string())
        micros = pc.cast(texts, _TS_US).cast(pa.int64()).to_numpy()
    except pa.ArrowInvalid:
        return pa.array(stamps, _TS)
    return pa.array(micros // 1000, pa.int64()).cast(_TS)


def _string_offsets(strings: pa.StringArray) -> np.ndarray[Any, np.dtype[np.int64]]:
    """Where each string of a fresh (unsliced) Arrow array starts, in UTF-8 bytes, and where the last ends."""
    return np.frombuffer(strings.buffers()[1], np.int32, len(strings) + 1).astype(np.int64)


class EventValidator:
    """Checks events against the catalog view and the contract's bounds.

    ``clock`` is the instant "5 minutes ahead" is measured from and ``accepted_at``; give it
    ``settings.clock``. The wall clock is the default.
    """

    def __init__(self, view: CatalogView, clock: Clock | None = None) -> None:
        self.view = view
        self.clock: Clock = clock if clock is not None else SystemClock()
        self._metric_sets: tuple[dict[str, dict[str, Any]], frozenset[str], frozenset[str]] = ({}, frozenset(),
                                                                                                frozenset())

    def _active_and_counting(self) -> tuple[frozenset[str], frozenset[str]]:
        """The active metric keys and those of them that count events, kept until the view reloads.

        One tuple attribute, replaced whole: a thread never sees one set of a new catalog with
        the other of an old one. It holds the dict it was made from, so identity tells staleness.
        """
        metrics = self.view.metrics
        seen, active, counting = self._metric_sets
        if seen is not metrics:
            active = frozenset(k for k, m in metrics.items() if m["status"] == "active")
            counting = frozenset(k for k in active if metrics[k]["aggregation"] in _COUNTING)
            self._metric_sets = (metrics, active, counting)
        return active, counting

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
            # The range first: quantizing a value of 10^18 or more to 10 places needs more digits
            # than the decimal context holds (InvalidOperation, not an answer).
            if abs(value) >= MAX_VALUE:
                raise InvalidInput("VALUE_OUT_OF_RANGE", "|value| must be below 10^18.", f"{prefix}value")
            exp = value.as_tuple().exponent
            if isinstance(exp, int) and exp < -MAX_PLACES and value != value.quantize(Decimal(1).scaleb(-MAX_PLACES)):
                raise InvalidInput("INVALID_DECIMAL", "Use at most 10 decimal places.", f"{prefix}value")
        props: list[tuple[str, str]] = []
        if e.properties:
            if len(e.properties) > MAX_PROPERTIES:
                raise InvalidInput("PROPERTIES_INVALID", "Send at most 50 properties.", f"{prefix}properties")
            if len(msgspec.json.encode(e.properties)) > MAX_PROPERTIES_BYTES:
                raise InvalidInput("PROPERTIES_INVALID", "Properties must be at most 8 KB as compact JSON.",
                                   f"{prefix}properties")
            props = [(k, _prop_text(v)) for k, v in e.properties.items() if v is not None]
        return ms, value, props

    def validate_batch(self, body: bytes) -> tuple[AcceptedBatch, list[Rejected], pa.RecordBatch | None] | None:  # noqa: PLR0911 - one return per rule that sends the batch to the slow path
        """The columnar fast path for a batch body where every event is valid.

        One msgspec decode of the whole batch (key length, property count, timestamp offset
        checked there, in C), then checks over whole columns: set inclusion for customers and
        metrics, one small decode of all values, Arrow's exact decimal conversion for the
        places, min/max for the ranges. No Python runs per event. Returns ``None`` if anything
        is off, and the caller takes the per-event path, which finds and reports each bad
        event with its own code; an accepted batch is the one that path would build.
        """
        try:
            events = _fast_decoder.decode(body).events
        except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
            return None
        n = len(events)
        view = self.view
        view.refresh_if_stale()
        active, counting = self._active_and_counting()
        customer_ids = list(map(_CUSTOMER, events))
        metric_keys = list(map(_METRIC, events))
        if not (view.customers.issuperset(customer_ids) and active.issuperset(metric_keys)):
            return None
        values = _values_column(b"[" + b",".join(map(_VALUE, events)) + b"]")
        if values is None:
            return None
        try:
            stamps = _stamps_column(list(map(_TIMESTAMP, events)))
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            return None
        if values.null_count:  # no value: 1 for a metric that counts, refused for one that sums
            if not counting.issuperset(compress(metric_keys, values.is_null().to_pylist())):
                return None
            values = pc.fill_null(values, pa.scalar(Decimal(1), _DECIMAL))
        low, high = pc.min_max(values).values()
        if low.as_py() <= -MAX_VALUE or high.as_py() >= MAX_VALUE:
            return None
        now = self.clock.now_ms()
        first, last = pc.min_max(stamps).values()
        if first.value < 0 or last.value > min(now + FUTURE_MS, MAX_MS - 1):
            return None
        properties = _fast_properties(list(map(_PROPERTIES, events)))
        if properties is None:
            return None
        keys = list(map(_KEY, events))
        id_column = event_id_array(keys)
        batch = pa.RecordBatch.from_arrays([
            id_column,
            pa.array(keys, pa.string()),
            pa.array(customer_ids, pa.string()),
            pa.array(metric_keys, pa.string()),
            values,
            stamps,
            properties,
            pa.repeat(pa.scalar(now, _TS), n),
        ], schema=_EVENT_SCHEMA)
        return AcceptedBatch(id_column, keys), [], batch

    def validate(self, raws: list[bytes],
                 prefix_fmt: str = "events.{}.") -> tuple[list[Accepted], list[Rejected], pa.RecordBatch | None]:
        """Validate raw events one by one; return the accepted ones as one record batch."""
        self.view.refresh_if_stale()
        now = self.clock.now_ms()
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
