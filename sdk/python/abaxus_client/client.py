"""The two entry points, :class:`Client` and :class:`AsyncClient`, with the same resources.

    from abaxus_client import Client
    with Client("sk_test_…", base_url="http://127.0.0.1:8080") as abaxus:
        invoice = abaxus.invoices.create(customer_id="cust_acme", cutoff_date="2026-04-30T23:59:59Z")

Configuration: ``api_key`` (else ``ABAXUS_API_KEY``), ``base_url`` (else ``ABAXUS_BASE_URL``,
else ``http://127.0.0.1:8080``), ``timeout`` (seconds per attempt, or an ``httpx.Timeout``),
``retry`` (a :class:`RetryPolicy`: attempts, total time, backoff), ``on_retry`` (called before
each retry wait, for logging or metrics), ``http_client`` (your own ``httpx.Client``: its
base_url, timeout, proxies and event hooks are used as they are; you close it).
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Mapping
from types import TracebackType

import httpx

from abaxus_client._retry import RetryEvent, RetryPolicy
from abaxus_client._transport import AsyncTransport, SyncTransport, TransportConfig
from abaxus_client.resources.api_keys import ApiKeys, AsyncApiKeys
from abaxus_client.resources.customers import AsyncCustomers, Customers
from abaxus_client.resources.entitlements import AsyncEntitlementsResource, EntitlementsResource
from abaxus_client.resources.events import AsyncEvents, Events
from abaxus_client.resources.invoices import AsyncInvoices, Invoices
from abaxus_client.resources.jobs import AsyncJobs, Jobs
from abaxus_client.resources.metrics import AsyncMetrics, Metrics
from abaxus_client.resources.price_plans import AsyncPricePlans, PricePlans
from abaxus_client.resources.pricing import AsyncPricing, Pricing
from abaxus_client.resources.subscriptions import AsyncSubscriptions, Subscriptions
from abaxus_client.resources.usage import AsyncUsage, Usage

__all__ = ["AsyncClient", "Client"]

DEFAULT_BASE_URL = "http://127.0.0.1:8080"
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=5.0)


def _config(api_key: str | None, base_url: str | None, timeout: float | httpx.Timeout | None,
            retry: RetryPolicy | None, on_retry: Callable[[RetryEvent], None] | None,
            headers: Mapping[str, str] | None, rng: random.Random | None) -> TransportConfig:
    key = api_key or os.environ.get("ABAXUS_API_KEY")
    if not key:
        raise ValueError("Pass api_key= or set ABAXUS_API_KEY (create a key with 'abaxus api-keys create --name NAME').")
    url = (base_url or os.environ.get("ABAXUS_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
    if url.endswith("/v1"):
        raise ValueError("base_url is the server root (http://host:port), without /v1: paths already include it.")
    if timeout is None:
        timeout = DEFAULT_TIMEOUT
    elif not isinstance(timeout, httpx.Timeout):
        timeout = httpx.Timeout(timeout, connect=min(float(timeout), 5.0))
    return TransportConfig(base_url=url, api_key=key, timeout=timeout, retry=retry or RetryPolicy(),
                           on_retry=on_retry, headers=dict(headers or {}), rng=rng)


class Client:
    """Blocking client; thread-safe (one connection pool shared by every thread and the batcher)."""

    def __init__(self, api_key: str | None = None, *, base_url: str | None = None,
                 timeout: float | httpx.Timeout | None = None, retry: RetryPolicy | None = None,
                 on_retry: Callable[[RetryEvent], None] | None = None, headers: Mapping[str, str] | None = None,
                 http_client: httpx.Client | None = None, rng: random.Random | None = None) -> None:
        if base_url is None and http_client is not None and str(http_client.base_url):
            base_url = str(http_client.base_url)  # a client of your own keeps its base_url, timeout and hooks
        self._transport = SyncTransport(_config(api_key, base_url, timeout, retry, on_retry, headers, rng), http_client)
        t = self._transport
        self.metrics = Metrics(t)
        self.price_plans = PricePlans(t)
        self.customers = Customers(t)
        self.subscriptions = Subscriptions(t)
        self.events = Events(t)
        self.usage = Usage(t)
        self.pricing = Pricing(t)
        self.invoices = Invoices(t)
        self.jobs = Jobs(t)
        self.entitlements = EntitlementsResource(t)
        self.api_keys = ApiKeys(t)

    @property
    def base_url(self) -> str:
        return self._transport.config.base_url

    def close(self) -> None:
        """Close the connection pool (not needed with ``with Client(...)``)."""
        self._transport.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class AsyncClient:
    """Non-blocking client for asyncio; every call is awaited, every list is an async iterator."""

    def __init__(self, api_key: str | None = None, *, base_url: str | None = None,
                 timeout: float | httpx.Timeout | None = None, retry: RetryPolicy | None = None,
                 on_retry: Callable[[RetryEvent], None] | None = None, headers: Mapping[str, str] | None = None,
                 http_client: httpx.AsyncClient | None = None, rng: random.Random | None = None) -> None:
        if base_url is None and http_client is not None and str(http_client.base_url):
            base_url = str(http_client.base_url)
        self._transport = AsyncTransport(_config(api_key, base_url, timeout, retry, on_retry, headers, rng),
                                         http_client)
        t = self._transport
        self.metrics = AsyncMetrics(t)
        self.price_plans = AsyncPricePlans(t)
        self.customers = AsyncCustomers(t)
        self.subscriptions = AsyncSubscriptions(t)
        self.events = AsyncEvents(t)
        self.usage = AsyncUsage(t)
        self.pricing = AsyncPricing(t)
        self.invoices = AsyncInvoices(t)
        self.jobs = AsyncJobs(t)
        self.entitlements = AsyncEntitlementsResource(t)
        self.api_keys = AsyncApiKeys(t)

    @property
    def base_url(self) -> str:
        return self._transport.config.base_url

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()
