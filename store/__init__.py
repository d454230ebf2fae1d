"""Stores behind one interface each, two engines each: metadata (SQLite | PostgreSQL) and
usage (chDB | ClickHouse server)."""

__all__: list[str] = []
