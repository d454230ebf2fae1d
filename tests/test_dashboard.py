"""The dashboard in a real browser: Debian's Chromium, headless, driven by Playwright, against a real ``abaxus serve``.

One server for the module: the Quick Start (metric, plan, customer, subscription, 1,200
events of value 1,000), a real Stripe fake (localstripe) behind it, and a ``read`` and an
``admin`` key made through the API. Every figure a page shows is checked against what the
API answers for the same question. Each test keeps a screenshot of every page it saw and
writes them to its ``tmp_path`` when it fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import stripe

from conftest import ADMIN_KEY
from quickstart_bodies import setup_quickstart_catalog
from server_process import ServerProcess

playwright_api = pytest.importorskip("playwright.sync_api", reason="pip install '.[test]' brings playwright")

CHROMIUM = "/usr/bin/chromium"
APRIL_CUTOFF = "2026-04-30T23:59:59Z"


def _chromium() -> str:
    """Debian's Chromium; installed here when missing and we may (CI runs as root; ``.ci/run`` installs it too)."""
    if os.path.exists(CHROMIUM):
        return CHROMIUM
    if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run("apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium", shell=True,
                       check=False, capture_output=True, timeout=900)
        if os.path.exists(CHROMIUM):
            return CHROMIUM
    pytest.skip(f"{CHROMIUM} is absent and could not be installed: run `apt-get install -y chromium` as root")


@dataclass
class Deployment:
    server: ServerProcess
    admin_key: str
    read_key: str
    stripe_customer: str

    @property
    def url(self) -> str:
        return self.server.url

    def api(self) -> httpx.Client:
        return self.server.client()


def _batch(prefix: str, customer: str, n: int, value: int = 1000) -> dict[str, Any]:
    return {"events": [{"customer_id": customer, "metric_key": "api_calls", "value": value,
                        "timestamp": "2026-04-03T09:30:00Z", "idempotency_key": f"{prefix}_{i}"} for i in range(n)]}


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory, localstripe_url: str) -> Iterator[Deployment]:
    server = ServerProcess(tmp_path_factory.mktemp("dashboard") / "data", ADMIN_KEY, extra_env={
        "STRIPE_SECRET_KEY": "sk_test_local", "STRIPE_API_BASE": localstripe_url})
    server.start()
    try:
        sc = stripe.StripeClient("sk_test_local", base_addresses={"api": localstripe_url}, max_network_retries=0)
        cus = sc.v1.customers.create(params={"email": "billing@acme.io"})
        pm = sc.v1.payment_methods.create(params={"type": "card", "card": {
            "number": "4242424242424242", "exp_month": 12, "exp_year": 2030, "cvc": "123"}})
        sc.v1.payment_methods.attach(pm.id, params={"customer": cus.id})
        with server.client() as c:
            setup_quickstart_catalog(c)
            r = c.patch("/v1/customers/cust_acme", json={"payment_provider_customer_id": cus.id,
                                                         "payment_method_id": pm.id})
            assert r.status_code == 200, r.text
            for b in range(12):  # the README's tour: 1,200 events of 1,000 calls
                r = c.post("/v1/events/batch", json=_batch(f"req_{b}", "cust_acme", 100))
                assert r.status_code == 202, r.text
            # A second customer whose April invoice is issued through the API, for the read key to fail to charge.
            assert c.post("/v1/customers", json={"id": "cust_beta", "name": "Beta Ltd"}).status_code == 201
            assert c.post("/v1/subscriptions", json={"customer_id": "cust_beta", "plan_id": "plan_growth",
                                                     "start_date": "2026-04-01T00:00:00Z"}).status_code == 201
            assert c.post("/v1/events/batch", json=_batch("beta", "cust_beta", 10)).status_code == 202
            keys = {}
            for scope in ("admin", "read"):
                r = c.post("/v1/api-keys", json={"name": f"dashboard-{scope}", "scope": scope, "mode": "test"})
                assert r.status_code == 201, r.text
                keys[scope] = r.json()["secret"]
        yield Deployment(server, keys["admin"], keys["read"], cus.id)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = _chromium()
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, headless=True, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


class Pages:
    """A browser tab that keeps a screenshot of every page it lands on, written out if the test fails."""

    def __init__(self, context: Any, base: str) -> None:
        self.context, self.base = context, base
        self.page = context.new_page()
        self.shots: list[tuple[str, bytes]] = []
        self.urls: list[str] = []

    def snap(self) -> None:
        self.urls.append(self.page.url)
        name = re.sub(r"[^A-Za-z0-9]+", "-", self.page.url.removeprefix(self.base)).strip("-") or "root"
        self.shots.append((f"{len(self.shots):02d}-{name[:80]}.png", self.page.screenshot(full_page=True)))

    def goto(self, path: str) -> Any:
        response = self.page.goto(self.base + path)
        self.snap()
        return response

    def click(self, selector: str) -> None:
        with self.page.expect_navigation():
            self.page.click(selector)
        self.snap()

    def sign_in(self, key: str) -> None:
        self.goto("/dashboard")
        assert self.page.url.startswith(f"{self.base}/dashboard/sign-in")
        self.page.fill("#api_key", key)
        self.click("button[type=submit]")
        assert self.page.url == f"{self.base}/dashboard", self.page.url

    def text(self, selector: str) -> str:
        return str(self.page.inner_text(selector)).strip()

    def texts(self, selector: str) -> list[str]:
        return [str(t).strip() for t in self.page.locator(selector).all_inner_texts()]

    def csrf(self) -> str:
        return str(self.page.get_attribute("form.signout input[name=csrf]", "value"))


@pytest.fixture
def tab(browser: Any, deployment: Deployment, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Pages]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, timezone_id="America/New_York",
                                  locale="en-US")
    pages = Pages(context, deployment.url)
    failed_before = request.session.testsfailed
    try:
        yield pages
    finally:
        if request.session.testsfailed > failed_before:  # the call phase failed: keep what it saw
            for name, png in pages.shots:
                (tmp_path / name).write_bytes(png)
            # The page may be gone; the earlier shots are still written.
            with contextlib.suppress(Exception):
                (tmp_path / "zz-at-failure.png").write_bytes(pages.page.screenshot(full_page=True))
            print(f"dashboard screenshots in {tmp_path}")
        context.close()


def usd(minor: int) -> str:
    """The API's integer minor units as the page must write them in USD."""
    sign = "\u2212" if minor < 0 else ""
    return f"{sign}${Decimal(abs(minor)).scaleb(-2):,.2f}"


def test_admin_walks_the_quickstart_customer_to_its_invoice_and_the_events_behind_a_line(
        tab: Pages, deployment: Deployment) -> None:
    tab.sign_in(deployment.admin_key)

    # The session cookie: HttpOnly, SameSite=Strict, only for /dashboard; the key in no URL and no storage.
    cookies = {c["name"]: c for c in tab.context.cookies()}
    session = cookies["abaxus_session"]
    assert (session["httpOnly"], session["sameSite"], session["path"]) == (True, "Strict", "/dashboard")
    assert session["value"].endswith(deployment.admin_key)
    assert tab.page.evaluate("document.cookie") == ""
    assert tab.page.evaluate("JSON.stringify(Object.assign({}, localStorage, sessionStorage))") == "{}"

    with deployment.api() as api:
        minutes = api.get("/v1/usage/ingestion", params={"minutes": 60}).json()["data"]
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        calc = api.post("/v1/pricing/calculate", json={"customer_id": "cust_acme", "cutoff_date": now})
    assert sum(m["event_count"] for m in minutes) == 1210  # Acme's 1,200 and Beta's 10, all in the last hour
    assert tab.text("[data-testid=events-last-hour]") == "1,210"
    assert tab.page.locator("svg.chart rect.bar").count() == 60

    tab.click("nav >> text=Customers")
    tab.click("text=Acme Corp")
    assert tab.page.url == f"{deployment.url}/dashboard/customers/cust_acme"
    # The estimate is the API's own calculation for the current period (no December usage: the base fee).
    assert calc.status_code == 200, calc.text
    assert tab.text("[data-testid=estimate-total]") == usd(calc.json()["total_amount"])

    # An admin key issues the April invoice from the customer's page.
    tab.page.fill("#cutoff_date", APRIL_CUTOFF)
    tab.click("#create-invoice button[type=submit]")
    invoice_id = tab.page.url.rsplit("/", 1)[-1].split("?")[0]
    assert invoice_id.startswith("inv_")
    assert tab.text(".notice") == "The invoice was issued."

    with deployment.api() as api:
        invoice = api.get(f"/v1/invoices/{invoice_id}").json()
        line_events = api.get(f"/v1/invoices/{invoice_id}/line-items/chg_1/events", params={"limit": 1}).json()
    assert invoice["total_amount"] == 14900
    assert tab.text("[data-testid=invoice-total]") == usd(invoice["total_amount"]) == "$149.00"
    assert tab.texts("[data-testid=line-amount]") == [usd(li["amount"]) for li in invoice["line_items"]] \
        == ["$100.00", "$49.00"]
    tiers = invoice["line_items"][0]["tier_breakdown"]
    assert tab.texts("[data-testid=tier-amount]") == [usd(t["amount"]) for t in tiers] == ["$0.00", "$90.00", "$10.00"]
    assert tab.texts("tr[data-tier] td:nth-child(3)") == ["100,000", "900,000", "200,000"]
    assert tab.texts("table.lines td.num:nth-child(2)")[:1] == ["1,200,000"]
    # Times are written in the viewer's zone (New York here), the UTC instant on hover.
    period_start = tab.page.locator("time[datetime='2026-04-01T00:00:00Z']").first
    assert period_start.get_attribute("title").startswith("2026-04-01 00:00:00 UTC")
    assert period_start.inner_text() == "Mar 31, 2026, 08:00:00 PM EDT"
    assert tab.texts(".card:last-of-type td:nth-child(2) code") == ["invoice.issued"]

    # Drill down: the events behind the usage line, with the API's count and checksum.
    tab.click("[data-testid=drill-chg_1]")
    assert tab.page.url == f"{deployment.url}/dashboard/invoices/{invoice_id}/lines/chg_1"
    assert line_events["event_count"] == invoice["line_items"][0]["event_count"] == 1200
    assert tab.text("[data-testid=event-count]") == "1,200"
    assert tab.text("[data-testid=events-checksum]") == line_events["events_checksum"] \
        == invoice["line_items"][0]["events_checksum"]
    first_page = tab.texts("tbody td:nth-child(2)")
    assert len(first_page) == 50
    tab.click("a[rel=next]")
    second_page = tab.texts("tbody td:nth-child(2)")
    assert len(second_page) == 50
    assert not set(first_page) & set(second_page)

    # Charge it (localstripe behind the server): paid, and the audit trail says so.
    tab.goto(f"/dashboard/invoices/{invoice_id}")
    assert tab.text("#charge") == "Charge $149.00"
    tab.click("#charge")
    assert tab.text(".notice") == "The invoice was charged."
    with deployment.api() as api:
        paid = api.get(f"/v1/invoices/{invoice_id}").json()
        trail = [e["type"] for e in api.get(f"/v1/invoices/{invoice_id}/events").json()["data"]]
    assert paid["status"] == "paid"
    assert trail == ["invoice.issued", "invoice.charge_attempted", "invoice.paid"]
    assert tab.texts(".card:last-of-type td:nth-child(2) code") == trail
    assert tab.page.locator("#charge").count() == 0

    # Sign out: the cookie is gone and pages send you to sign in again.
    tab.click("form.signout button")
    assert tab.page.url == f"{deployment.url}/dashboard/sign-in?done=signed-out"
    assert "abaxus_session" not in {c["name"] for c in tab.context.cookies()}
    tab.goto("/dashboard/customers")
    assert tab.page.url.startswith(f"{deployment.url}/dashboard/sign-in?next=")
    assert all(deployment.admin_key not in u for u in tab.urls)


def _beta_invoice(deployment: Deployment) -> dict[str, Any]:
    with deployment.api() as api:
        found = api.get("/v1/invoices", params={"customer_id": "cust_beta"}).json()["data"]
        if found:
            return found[0]  # type: ignore[no-any-return]
        r = api.post("/v1/invoices", json={"customer_id": "cust_beta", "cutoff_date": APRIL_CUTOFF})
        assert r.status_code == 201, r.text
        return r.json()  # type: ignore[no-any-return]


def test_a_read_key_sees_the_invoice_but_its_charge_is_refused_by_the_api(tab: Pages, deployment: Deployment) -> None:
    invoice = _beta_invoice(deployment)
    tab.sign_in(deployment.read_key)
    assert tab.text(".scope") == "read key"
    tab.goto(f"/dashboard/invoices/{invoice['id']}")
    assert tab.text("[data-testid=invoice-total]") == usd(invoice["total_amount"]) == "$49.00"
    assert tab.page.locator("#charge").count() == 0
    assert tab.page.locator("#archive").count() == 0
    assert tab.text("[data-testid=read-only]") == "Signed in with a read key: charging and archiving need an admin key."

    # Even a well-formed charge form (this session's CSRF token) is refused: by the API, with its 403.
    token = tab.csrf()
    tab.page.evaluate("""([action, token]) => {
        const f = document.createElement('form'); f.method = 'post'; f.action = action;
        const i = document.createElement('input'); i.type = 'hidden'; i.name = 'csrf'; i.value = token;
        f.appendChild(i); document.body.appendChild(f); f.submit(); }""",
                      [f"/dashboard/invoices/{invoice['id']}/charge", token])
    tab.page.wait_for_selector(".error")
    tab.snap()
    assert tab.text(".error strong") == "403 INSUFFICIENT_SCOPE"
    assert f"does not allow POST /v1/invoices/{invoice['id']}/charge" in tab.text(".error")
    response = tab.page.request.post(f"{deployment.url}/dashboard/invoices/{invoice['id']}/charge",
                                     form={"csrf": token})
    assert response.status == 403
    with deployment.api() as api:
        assert api.get(f"/v1/invoices/{invoice['id']}").json()["status"] == "issued"
    # The read key cannot issue invoices either: no form, and the API says no.
    tab.goto("/dashboard/customers/cust_beta")
    assert tab.page.locator("#create-invoice").count() == 0
    refused = tab.page.request.post(f"{deployment.url}/dashboard/customers/cust_beta/invoices",
                                    form={"csrf": token, "cutoff_date": "2026-05-31T23:59:59Z"})
    assert refused.status == 403
    assert "INSUFFICIENT_SCOPE" in refused.text()


def test_a_post_without_the_sessions_csrf_token_is_refused_and_changes_nothing(tab: Pages, deployment: Deployment) -> None:
    invoice = _beta_invoice(deployment)
    charge_url = f"{deployment.url}/dashboard/invoices/{invoice['id']}/charge"
    # The sign-in form itself carries a token; a POST without it signs nobody in.
    no_token = tab.page.request.post(f"{deployment.url}/dashboard/sign-in", form={"api_key": deployment.admin_key},
                                     max_redirects=0)
    assert no_token.status == 403
    assert "abaxus_session" not in {c["name"] for c in tab.context.cookies()}

    tab.sign_in(deployment.admin_key)
    for form in ({}, {"csrf": "0" * 64}, {"csrf": tab.csrf()[:-1] + "x"}):
        refused = tab.page.request.post(charge_url, form=form, max_redirects=0)
        assert refused.status == 403, form
        assert "403 CSRF_CHECK_FAILED" in refused.text()
    with deployment.api() as api:
        assert api.get(f"/v1/invoices/{invoice['id']}").json()["status"] == "issued"
    # Signing in again draws a new token: the old one no longer works.
    old = tab.csrf()
    tab.goto("/dashboard/sign-in")
    tab.page.fill("#api_key", deployment.admin_key)
    tab.click("button[type=submit]")
    assert tab.csrf() != old
    archive = tab.page.request.post(f"{deployment.url}/dashboard/invoices/{invoice['id']}/archive",
                                    form={"csrf": old, "reason": "test"}, max_redirects=0)
    assert archive.status == 403


def test_plans_show_versions_side_by_side_and_what_changed(tab: Pages, deployment: Deployment) -> None:
    v2 = json.loads(Path(__file__).with_name("quickstart_bodies.py").read_text().split('PLAN_JSON = b"""')[1]
                    .split('"""')[0])
    v2["charges"][1]["amount"] = "59.00"
    v2["changelog"] = "Base fee 49 → 59"
    with deployment.api() as api:
        highest = api.get("/v1/price-plans/plan_growth").json()["version"]
        if highest == 1:
            assert api.post("/v1/price-plans", json=v2).status_code == 201
    tab.sign_in(deployment.read_key)
    tab.goto("/dashboard/plans")
    tab.click("text=Growth")
    assert tab.page.locator("article.version").count() == 2
    assert tab.texts("article.version h3") == ["v1 superseded", "v2 active"]
    rows = [r.split("\t") for r in tab.texts("table.diff tbody tr")]
    assert ["changed", "changelog", "—", "Base fee 49 → 59"] in rows
    assert ["changed", "charge chg_2: amount", "49.00", "59.00"] in rows
    tab.goto("/dashboard/plans/plan_growth?a=1&b=1")
    assert tab.text(".card:last-of-type .empty") == "Pick two different versions to compare."
    tab.goto("/dashboard/metrics")
    assert tab.texts("tbody td:first-child") == ["api_calls"]


def test_pages_fit_a_phone_screen_and_empty_lists_say_what_to_do(browser: Any, deployment: Deployment,
                                                                  tmp_path: Path) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    pages = Pages(context, deployment.url)
    try:
        pages.sign_in(deployment.read_key)
        invoice = _beta_invoice(deployment)
        for path in ("/dashboard", "/dashboard/customers", "/dashboard/customers/cust_acme",
                     f"/dashboard/invoices/{invoice['id']}", f"/dashboard/invoices/{invoice['id']}/lines/chg_1",
                     "/dashboard/plans/plan_growth", "/dashboard/metrics"):
            assert pages.goto(path).status == 200, path
            overflow = pages.page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, (path, overflow)
        pages.goto("/dashboard/customers?q=nobody-by-that-name")
        assert pages.text(".empty").startswith("No customer's id, name or email contains “nobody-by-that-name”.")
        pages.goto("/dashboard/invoices?status=archived")
        assert pages.text(".empty").startswith("No archived invoices. Issue one from a customer's page")
        pages.goto("/dashboard/customers?q=beta")
        assert pages.texts("tbody td:first-child") == ["Beta Ltd"]
        missing = pages.goto("/dashboard/invoices/inv_00000000000000000000000000")
        assert missing.status == 404
        assert pages.text(".error strong") == "404 INVOICE_NOT_FOUND"
    except BaseException:
        for name, png in pages.shots:
            (tmp_path / name).write_bytes(png)
        raise
    finally:
        context.close()


def test_dashboard_routes_stay_out_of_the_openapi_document(deployment: Deployment) -> None:
    doc = httpx.get(f"{deployment.url}/schema/openapi.json", timeout=30).json()
    assert not [p for p in doc["paths"] if p.startswith("/dashboard")]
    assert "/v1/usage/ingestion" in doc["paths"]
    assets = [httpx.get(f"{deployment.url}/dashboard/static/{name}", timeout=10) for name in ("dashboard.css", "dashboard.js")]
    assert [a.status_code for a in assets] == [200, 200]
    page = httpx.get(f"{deployment.url}/dashboard/sign-in", timeout=10)
    assert not re.findall(r"""(?:src|href)="https?://""", page.text)  # every asset ships in the package
