"""The intake record: one Arrow IPC stream per accepted request, columnar from the API on."""

from __future__ import annotations

import pyarrow as pa

__all__ = ["INTAKE_SCHEMA", "decode_record", "encode_record"]

INTAKE_SCHEMA = pa.schema([
    ("event_id", pa.string()),
    ("idempotency_key", pa.string()),
    ("customer_id", pa.string()),
    ("metric_key", pa.string()),
    ("value", pa.decimal128(38, 10)),
    ("timestamp", pa.timestamp("ms", tz="UTC")),
    ("properties", pa.map_(pa.string(), pa.string())),
    ("accepted_at", pa.timestamp("ms", tz="UTC")),
])


def encode_record(batch: pa.RecordBatch, *, backfill: bool) -> bytes:
    schema = batch.schema.with_metadata({b"backfill": b"1" if backfill else b"0"})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, schema) as writer:
        writer.write_batch(batch.replace_schema_metadata(schema.metadata))
    return sink.getvalue().to_pybytes()


def decode_record(payload: bytes) -> tuple[pa.RecordBatch, bool]:
    reader = pa.ipc.open_stream(payload)
    batch = reader.read_next_batch()
    backfill = (reader.schema.metadata or {}).get(b"backfill") == b"1"
    return batch, backfill
