"""Typed Python client for the Abaxus API v1.

    from abaxus_client import Client, Event
    with Client("sk_test_…") as abaxus:
        with abaxus.events.batcher() as batcher:
            batcher.add(Event(customer_id="cust_acme", metric_key="api_calls", value=1,
                              timestamp="2026-04-03T09:30:00Z", idempotency_key="req_1"))
"""

from abaxus_client._encoding import event_id_for, parse_timestamp
from abaxus_client._ledger import EventResult
from abaxus_client._retry import RetryEvent, RetryPolicy
from abaxus_client._version import __version__
from abaxus_client.batcher import AsyncEventBatcher, EventBatcher
from abaxus_client.client import AsyncClient, Client
from abaxus_client.errors import (
    AbaxusError,
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    InternalServerError,
    NotFoundError,
    PayloadTooLargeError,
    PaymentFailedError,
    PermissionDeniedError,
    RateLimitedError,
    UnavailableError,
    ValidationError,
)
from abaxus_client.models import UNSET, Charge, Entitlement, Event, Tier

__all__ = [
    "UNSET", "APIConnectionError", "APITimeoutError", "AbaxusError", "AsyncClient", "AsyncEventBatcher",
    "AuthenticationError", "BadRequestError", "Charge", "Client", "ConflictError", "Entitlement", "Event",
    "EventBatcher", "EventResult", "InternalServerError", "NotFoundError", "PayloadTooLargeError",
    "PaymentFailedError", "PermissionDeniedError", "RateLimitedError", "RetryEvent", "RetryPolicy", "Tier",
    "UnavailableError", "ValidationError", "__version__", "event_id_for", "parse_timestamp",
]
