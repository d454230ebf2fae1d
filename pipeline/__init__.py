"""Durable intake and the Bytewax dataflow: api → log → dedup → usage store."""
