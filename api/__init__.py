"""The HTTP API (Litestar). ``create_app`` builds it from a ``Settings``."""

from abaxus.api.app import create_app

__all__ = ["create_app"]
