"""The spec's Quick Start (§19) against a fresh embedded instance, over real HTTP.

Used by ``abaxus quickstart``: a newcomer's first "it works", and by the slow scenario test.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from pathlib import Path
from typing import Any

import httpx
import msgspec
import uvicorn

from abaxus.api.app import create_app
from abaxus.settings import Settings

__all__ = ["run_quickstart"]

KEY = "sk_test_" + "Q" * 40
PLAN = {"id": "plan_growth", "name": "Growth", "currency": "usd", "billing_period": "monthly", "charges": [
    {"metric_key": "api_calls", "pricing_model": "tiered", "tiers": [
        {"up_to": 100000, "unit_price": 0}, {"up_to": 1000000, "unit_price": "0.0001"},
        {"up_to": None, "unit_price": "0.00005"}]},
    {"metric_key": None, "pricing_model": "flat_fee", "amount": "49.00", "description": "Growth base fee"}]}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_quickstart(data_dir: Path, events: int = 1_200_000, progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Run steps 1–6 of the Quick Start; return the April invoice."""
    port = _free_port()
    settings = Settings(data_dir=data_dir, bootstrap_key=KEY, port=port, log_format="console", rate_limit_rpm=10**9)
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    # The app's logging config would print every request this client sends; the table is the output.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {KEY}"}, timeout=120) as c:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if c.get("/readyz").status_code == HTTPStatus.OK:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("the embedded server did not become ready")
                time.sleep(0.1)
            c.post("/v1/metrics", json={"key": "api_calls", "name": "API Calls", "aggregation": "sum",
                                        "description": "Total API calls made during the billing period"}).raise_for_status()
            c.post("/v1/price-plans", json=PLAN).raise_for_status()
            c.post("/v1/customers", json={"id": "cust_acme", "name": "Acme Corp", "email": "billing@acme.io",
                                          "payment_provider": "stripe",
                                          "payment_provider_customer_id": "cus_stripe_acme123"}).raise_for_status()
            c.post("/v1/subscriptions", json={"customer_id": "cust_acme", "plan_id": "plan_growth",
                                              "start_date": "2026-04-01T00:00:00Z"}).raise_for_status()
            sent = 0
            while sent < events:
                n = min(1000, events - sent)
                # Spread the calls over April: one timestamp per second from 04-01.
                batch = [{"customer_id": "cust_acme", "metric_key": "api_calls", "value": 1,
                          "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(1775001600 + (sent + i) % 2_500_000)),
                          "idempotency_key": f"qs-{sent + i}"} for i in range(n)]
                body_bytes = msgspec.json.encode({"events": batch})
                while True:
                    r = c.post("/v1/events/batch", content=body_bytes, headers={"Content-Type": "application/json"})
                    # 503: back-pressure, nothing accepted; resend after Retry-After.
                    if r.status_code != HTTPStatus.SERVICE_UNAVAILABLE:
                        break
                    time.sleep(float(r.headers.get("retry-after", "1")))
                r.raise_for_status()
                sent += n
                if progress:
                    progress(n)
            body = {"customer_id": "cust_acme", "metric_key": "api_calls", "period_start": "2026-04-01T00:00:00Z",
                    "period_end": "2026-04-30T23:59:59Z"}
            while True:
                data = c.post("/v1/usage/compute", json=body).json()["data"]
                if data and data[0]["event_count"] >= events:
                    break
                time.sleep(0.2)
            r = c.post("/v1/invoices", json={"customer_id": "cust_acme", "cutoff_date": "2026-04-30T23:59:59Z"})
            r.raise_for_status()
            return r.json()  # type: ignore[no-any-return]
    finally:
        server.should_exit = True
        thread.join(30)
