"""Durable intake and the Bytewax dataflow: api → log → dedup → usage store."""

__all__: list[str] = []
