"""The intake record: one Arrow IPC stream per accepted request, columnar from the API on."""

from __future__ import annotations

from typing import cast

import pyarrow as pa

from abaxus.store.usage import EVENT_SCHEMA

__all__ = ["INTAKE_SCHEMA", "decode_record", "encode_record"]

# The stored event's own columns, plus when the API accepted it (the sink stamps ingested_at).
INTAKE_SCHEMA = pa.schema([
    *(EVENT_SCHEMA.field(name) for name in ("event_id", "idempotency_key", "customer_id", "metric_key", "value",
                                            "timestamp", "properties")),
    pa.field("accepted_at", pa.timestamp("ms", tz="UTC")),
])


def encode_record(batch: pa.RecordBatch, *, backfill: bool) -> bytes:
    schema = batch.schema.with_metadata({b"backfill": b"1" if backfill else b"0"})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, schema) as writer:
        writer.write_batch(batch.replace_schema_metadata(schema.metadata))
    return cast(bytes, sink.getvalue().to_pybytes())  # pyarrow ships no type information


def decode_record(payload: bytes) -> tuple[pa.RecordBatch, bool]:
    reader = pa.ipc.open_stream(payload)
    batch = reader.read_next_batch()
    backfill = (reader.schema.metadata or {}).get(b"backfill") == b"1"
    return batch, backfill
