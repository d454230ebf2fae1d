"""The dashboard's pages and forms: each reads the public API as the signed-in key and renders a template.

Every page goes through ``_page`` (a session or a redirect to sign-in; an API error becomes a
readable page with the API's status) and every form through ``_form`` (session and CSRF
token checked before anything is sent to the API). Writes redirect back (POST, then GET) so
a reload never repeats them; each write form also carries an ``Idempotency-Key`` drawn when
the page was rendered, so a double submit is answered once by the API (§16).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http import HTTPStatus
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
from litestar import Request, Response, get, post
from litestar.exceptions import HTTPException
from litestar.response import Redirect
from prometheus_client.parser import text_string_to_metric_families

from abaxus.api.dashboard._charts import Bar, bar_chart
from abaxus.api.dashboard._client import Api, ApiError
from abaxus.api.dashboard._diff import plan_changes
from abaxus.api.dashboard._format import FILTERS, quantity, utc_text
from abaxus.api.dashboard._session import (
    Session,
    check_csrf,
    clear_session,
    read_session,
    set_pre_token,
    set_session,
    signin_token_ok,
    well_formed_key,
)
from abaxus.api.state import services_of
from abaxus.timefmt import ms_to_datetime

__all__ = ["BASE", "HANDLERS", "not_found_page"]

BASE = "/dashboard"
PAGE_SIZE = 25
_ENV = jinja2.Environment(loader=jinja2.PackageLoader("abaxus.api.dashboard", "templates"),
                          autoescape=jinja2.select_autoescape(["html"]), undefined=jinja2.StrictUndefined,
                          trim_blocks=True, lstrip_blocks=True)
_ENV.filters.update(FILTERS)
_ENV.filters["path"] = lambda v: quote(str(v), safe="")
_ENV.globals["BASE"] = BASE

_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
DONE = {"charged": "The invoice was charged.", "archived": "The invoice was archived.",
        "created": "The invoice was issued.", "signed-out": "Signed out."}


@dataclass
class Ctx:
    request: Request[Any, Any, Any]
    session: Session
    api: Api


def _html(template: str, status: int = 200, **context: Any) -> Response[str]:
    body = _ENV.get_template(template).render(**context)
    return Response(content=body, status_code=status, media_type="text/html; charset=utf-8", headers=_HEADERS)


def render(ctx: Ctx | None, template: str, status: int = 200, **context: Any) -> Response[str]:
    request = ctx.request if ctx else None
    done = DONE.get(request.query_params.get("done", "")) if request else None
    context.setdefault("link", None)
    return _html(template, status, session=ctx.session if ctx else None, notice=done,
                 path=request.url.path if request else "", **context)


def _sign_in_redirect(request: Request[Any, Any, Any], reason: str | None = None) -> Response[Any]:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    query = {"next": target} if target.startswith(BASE) and target != f"{BASE}/sign-in" else {}
    if reason:
        query["reason"] = reason
    response: Response[Any] = Redirect(f"{BASE}/sign-in" + (f"?{urlencode(query)}" if query else ""), status_code=303)
    return response


def _error_page(ctx: Ctx | None, err: ApiError) -> Response[str]:
    return render(ctx, "error.html", status=err.status, error=err)


async def _page(request: Request[Any, Any, Any], build: Callable[[Ctx], Awaitable[Response[Any]]]) -> Response[Any]:
    session = read_session(request)
    if session is None:
        return _sign_in_redirect(request)
    async with Api(request.app, session.key) as api:
        ctx = Ctx(request, session, api)
        try:
            return await build(ctx)
        except ApiError as err:
            if err.status == HTTPStatus.UNAUTHORIZED:
                response = _sign_in_redirect(request, "expired")
                clear_session(response)
                return response
            return _error_page(ctx, err)


async def _form(request: Request[Any, Any, Any],
                act: Callable[[Ctx, dict[str, str]], Awaitable[Response[Any]]]) -> Response[Any]:
    form = {k: str(v) for k, v in (await request.form()).items()}
    session = read_session(request)
    if session is None:
        return _sign_in_redirect(request)
    async with Api(request.app, session.key) as api:
        ctx = Ctx(request, session, api)
        if not check_csrf(session, form.get("csrf", "")):
            return render(ctx, "error.html", status=403, error=ApiError(
                403, "CSRF_CHECK_FAILED", "This form did not carry this session's token (it expired, or another site "
                "sent it). Nothing was done: reload the page and submit it again."))
        try:
            return await act(ctx, form)
        except ApiError as err:
            if err.status == HTTPStatus.UNAUTHORIZED:
                response = _sign_in_redirect(request, "expired")
                clear_session(response)
                return response
            return _error_page(ctx, err)


def _redirect(path: str, done: str | None = None) -> Response[Any]:
    return Redirect(path + (f"?done={done}" if done else ""), status_code=303)


def _now(request: Request[Any, Any, Any]) -> datetime:
    """The app's clock (its settings'), so a page's "this month" is the API's."""
    return ms_to_datetime(services_of(request.app.state).settings.clock.now_ms())


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(instant: str) -> datetime:
    return datetime.fromisoformat(instant.replace("Z", "+00:00"))


# ---- sign-in ---------------------------------------------------------------------------
_REASONS = {"expired": "That key is no longer accepted (revoked or unknown): sign in again."}


def _safe_next(target: str | None) -> str:
    if target and target.startswith(BASE) and not target.startswith("//") and "\\" not in target:
        return target
    return BASE


@get("/sign-in", include_in_schema=False)
async def sign_in_form(request: Request[Any, Any, Any]) -> Response[str]:
    token = secrets.token_hex(16)
    notice = DONE.get(request.query_params.get("done", "")) or _REASONS.get(request.query_params.get("reason", ""))
    response = _html("sign_in.html", session=None, notice=notice, path=request.url.path, token=token,
                     next=_safe_next(request.query_params.get("next")), error=None)
    set_pre_token(response, request, token)
    return response


@post("/sign-in", include_in_schema=False)
async def sign_in(request: Request[Any, Any, Any]) -> Response[Any]:
    form = {k: str(v) for k, v in (await request.form()).items()}
    target = _safe_next(form.get("next"))

    def again(message: str, status: int) -> Response[str]:
        token = secrets.token_hex(16)
        response = _html("sign_in.html", status=status, session=None, notice=None, path=request.url.path, token=token,
                         next=target, error=message)
        set_pre_token(response, request, token)
        return response

    if not signin_token_ok(request, form.get("csrf", "")):
        return again("The sign-in form expired or came from another site; nothing was done. Try again.", 403)
    key = form.get("api_key", "").strip()
    if not well_formed_key(key):
        return again("Paste a whole API key: sk_live_ or sk_test_ followed by 40 letters and digits.", 422)
    async with Api(request.app, key) as api:
        try:
            scope = await api.scope()
        except ApiError as err:
            if err.status == HTTPStatus.UNAUTHORIZED:
                return again("The API does not know that key (or it was revoked). Check it, or create one with "
                             "`abaxus api-keys create --name dashboard --scope read`.", 401)
            if err.status == HTTPStatus.FORBIDDEN:
                return again("That key's scope cannot read the catalog: sign in with a read or admin key "
                             "(an ingest key only sends events).", 403)
            return again(f"The API answered {err.status} {err.code}: {err.message}", err.status)
    response: Response[Any] = Redirect(target, status_code=303)
    set_session(response, request, key, scope)
    return response


@post("/sign-out", include_in_schema=False)
async def sign_out(request: Request[Any, Any, Any]) -> Response[Any]:
    async def act(ctx: Ctx, form: dict[str, str]) -> Response[Any]:
        response = _redirect(f"{BASE}/sign-in", "signed-out")
        clear_session(response)
        return response
    return await _form(request, act)


# ---- overview ---------------------------------------------------------------------------
def _prometheus(text: str) -> dict[str, Any]:
    found: dict[str, Any] = {"ingested": Decimal(0), "deduplicated": Decimal(0), "lag": Decimal(0), "rejected": {}}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            value = Decimal(repr(sample.value))
            if sample.name == "abaxus_events_ingested_total":
                found["ingested"] = value
            elif sample.name == "abaxus_events_deduplicated_total":
                found["deduplicated"] = value
            elif sample.name == "abaxus_pipeline_lag_seconds":
                found["lag"] = value
            elif sample.name == "abaxus_events_rejected_total" and value > 0:
                found["rejected"][sample.labels.get("code", "?")] = value
    found["rejected"] = dict(sorted(found["rejected"].items(), key=lambda kv: (-kv[1], kv[0])))
    return found


MAX_INVOICE_PAGES = 10


async def _invoices_since(api: Api, since: datetime) -> tuple[list[dict[str, Any]], bool]:
    """Invoices created since ``since`` (lists are newest first); True if the scan stopped at its bound."""
    rows: list[dict[str, Any]] = []
    cursor = None
    for _ in range(MAX_INVOICE_PAGES):
        page = await api.get("/v1/invoices", limit=1000, cursor=cursor)
        for inv in page["data"]:
            if _parse(inv["created_at"]) < since:
                return rows, False
            rows.append(inv)
        cursor = page["next_cursor"]
        if not cursor:
            return rows, False
    return rows, True


@get("/", include_in_schema=False)
async def overview(request: Request[Any, Any, Any]) -> Response[Any]:
    async def build(ctx: Ctx) -> Response[Any]:
        rate, prom = await asyncio.gather(ctx.api.get("/v1/usage/ingestion", minutes=60), ctx.api.text("/metrics"))
        counters = _prometheus(prom)
        now = _now(request)
        month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        invoices, truncated = await _invoices_since(ctx.api, month_start)
        totals: dict[str, int] = {}
        by_status: dict[str, int] = {}
        for inv in invoices:
            by_status[inv["status"]] = by_status.get(inv["status"], 0) + 1
            if inv["status"] != "archived":
                totals[inv["currency"]] = totals.get(inv["currency"], 0) + int(inv["total_amount"])
        n = len(rate["data"])  # axis labels in minutes ago, the same in every time zone
        bars = [Bar(f"−{n - i} min", Decimal(m["event_count"]),
                    f"{quantity(m['event_count'])} events, minute from {utc_text(m['minute'])}")
                for i, m in enumerate(rate["data"])]
        total_hour = sum(int(m["event_count"]) for m in rate["data"])
        chart = bar_chart(bars, f"Events ingested per minute, last hour: {total_hour:,} in all", label_every=10)
        return render(ctx, "overview.html", rate=rate, chart=chart, total_hour=total_hour, counters=counters,
                      invoices=invoices, totals=totals, by_status=by_status, truncated=truncated,
                      month_start=_iso(month_start))
    return await _page(request, build)


# ---- customers --------------------------------------------------------------------------
SEARCH_PAGES = 5
SEARCH_HITS = 100  # a search shows at most this many customers


async def _search(api: Api, q: str) -> tuple[list[dict[str, Any]], bool]:
    """Customers whose id, name or email contain ``q`` (case-insensitive), newest first; True if cut short."""
    needle = q.casefold()
    found: list[dict[str, Any]] = []
    try:
        found.append(await api.get(f"/v1/customers/{quote(q, safe='')}"))
    except ApiError as err:
        if err.status not in (404, 422):
            raise
    cursor = None
    for _ in range(SEARCH_PAGES):
        page = await api.get("/v1/customers", limit=1000, cursor=cursor)
        for c in page["data"]:
            hay = " ".join(str(c.get(k) or "") for k in ("id", "name", "email")).casefold()
            if needle in hay and all(f["id"] != c["id"] for f in found):
                found.append(c)
        cursor = page["next_cursor"]
        if not cursor or len(found) >= SEARCH_HITS:
            return found[:SEARCH_HITS], bool(cursor)
    return found[:SEARCH_HITS], True


@get("/customers", include_in_schema=False)
async def customers(request: Request[Any, Any, Any]) -> Response[Any]:
    async def build(ctx: Ctx) -> Response[Any]:
        q = request.query_params.get("q", "").strip()
        if q:
            rows, cut = await _search(ctx.api, q)
            return render(ctx, "customers.html", q=q, rows=rows, next_cursor=None, cursor=None, cut=cut,
                          searched=SEARCH_PAGES * 1000)
        cursor = request.query_params.get("cursor") or None
        page = await ctx.api.get("/v1/customers", limit=PAGE_SIZE, cursor=cursor)
        return render(ctx, "customers.html", q="", rows=page["data"], next_cursor=page["next_cursor"], cursor=cursor,
                      cut=False, searched=0)
    return await _page(request, build)


async def _estimate(api: Api, customer_id: str, sub: dict[str, Any], cutoff: str) -> dict[str, Any]:
    try:
        calc = await api.post("/v1/pricing/calculate", {"customer_id": customer_id, "cutoff_date": cutoff,
                                                          "subscription_id": sub["id"]})
        return {"subscription": sub, "calc": calc, "error": None}
    except ApiError as err:
        if err.status in (401, 403) or err.status >= HTTPStatus.INTERNAL_SERVER_ERROR:
            raise
        return {"subscription": sub, "calc": None, "error": err}


async def _daily_usage(api: Api, customer_id: str, start: datetime, end: datetime) -> dict[str, list[Bar]]:
    """Quantity per metric per UTC day in [start, end), one ``/v1/usage/summary`` call per day."""
    days: list[tuple[datetime, datetime]] = []
    day = start
    while day < end:
        nxt = min((day + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0), end)
        days.append((day, nxt))
        day = nxt

    async def one(a: datetime, b: datetime) -> Any:
        return await api.get("/v1/usage/summary", customer_id=customer_id, **{"from": _iso(a)},
                             to=_iso(b - timedelta(seconds=1)))

    answers: list[Any] = []
    for i in range(0, len(days), 8):
        answers += await asyncio.gather(*(one(a, b) for a, b in days[i:i + 8]))
    per_metric: dict[str, list[Bar]] = {}
    for (a, _b), answer in zip(days, answers, strict=True):
        for row in answer["data"]:
            per_metric.setdefault(row["metric_key"], []).append(Bar(
                a.strftime("%d"), Decimal(row["quantity"]),
                f"{a:%Y-%m-%d} (UTC): {quantity(row['quantity'])} ({quantity(row['event_count'])} events)"))
    return {k: v for k, v in per_metric.items() if any(b.value != 0 for b in v)}


@get("/customers/{customer_id:str}", include_in_schema=False)
async def customer(request: Request[Any, Any, Any], customer_id: str) -> Response[Any]:
    async def build(ctx: Ctx) -> Response[Any]:
        cursor = request.query_params.get("cursor") or None
        cust, subs, ents, invs = await asyncio.gather(
            ctx.api.get(f"/v1/customers/{quote(customer_id, safe='')}"),
            ctx.api.get("/v1/subscriptions", customer_id=customer_id, limit=100),
            ctx.api.get("/v1/entitlements", customer_id=customer_id),
            ctx.api.get("/v1/invoices", customer_id=customer_id, limit=PAGE_SIZE, cursor=cursor))
        subscriptions = subs["data"]
        amendments = await asyncio.gather(*(ctx.api.get(f"/v1/subscriptions/{s['id']}/amendments", limit=100)
                                            for s in subscriptions))
        now = _now(request)
        live = [s for s in subscriptions if s["status"] in ("active", "paused")][:5]
        estimates = [await _estimate(ctx.api, customer_id, s, _iso(now)) for s in live]
        starts = [_parse(e["calc"]["period_start"]) for e in estimates if e["calc"]]
        charts: dict[str, Any] = {}
        period_start = min(starts) if starts else None
        if period_start is not None:
            usage = await _daily_usage(ctx.api, customer_id, period_start, now)
            for key, bars in usage.items():
                total = sum((b.value for b in bars), Decimal(0))
                charts[key] = bar_chart(bars, f"{key} per day since {period_start:%Y-%m-%d}: {quantity(total)} in all",
                                        label_every=max(1, len(bars) // 10))
        default_cutoff = ""
        if period_start is not None:
            default_cutoff = _iso(period_start - timedelta(seconds=1))
        return render(ctx, "customer.html", customer=cust, subscriptions=list(zip(subscriptions, amendments, strict=True)),
                      entitlements=ents["entitlements"], invoices=invs["data"], next_cursor=invs["next_cursor"],
                      cursor=cursor, estimates=estimates, charts=charts, period_start=_iso(period_start) if period_start
                      else None, default_cutoff=default_cutoff, idem=secrets.token_hex(16))
    return await _page(request, build)


@post("/customers/{customer_id:str}/invoices", include_in_schema=False)
async def create_invoice(request: Request[Any, Any, Any], customer_id: str) -> Response[Any]:
    async def act(ctx: Ctx, form: dict[str, str]) -> Response[Any]:
        body = {"customer_id": customer_id, "cutoff_date": form.get("cutoff_date", "").strip()}
        if form.get("subscription_id"):
            body["subscription_id"] = form["subscription_id"]
        try:
            invoice = await ctx.api.post("/v1/invoices", body, idempotency_key=form.get("idem") or None)
        except ApiError as err:
            existing = err.extra.get("existing_invoice_id")
            return render(ctx, "error.html", status=err.status, error=err,
                          link=(f"{BASE}/invoices/{existing}", "Open the existing invoice") if existing else
                          (f"{BASE}/customers/{quote(customer_id, safe='')}", "Back to the customer"))
        return _redirect(f"{BASE}/invoices/{invoice['id']}", "created")
    return await _form(request, act)


# ---- invoices ---------------------------------------------------------------------------
@get("/invoices", include_in_schema=False)
async def invoices(request: Request[Any, Any, Any]) -> Response[Any]:
    async def build(ctx: Ctx) -> Response[Any]:
        cursor = request.query_params.get("cursor") or None
        wanted = request.query_params.get("status") or None
        page = await ctx.api.get("/v1/invoices", limit=PAGE_SIZE, cursor=cursor, status=wanted)
        return render(ctx, "invoices.html", rows=page["data"], next_cursor=page["next_cursor"], cursor=cursor,
                      wanted=wanted)
    return await _page(request, build)


async def _invoice_page(ctx: Ctx, invoice_id: str, status: int = 200, error: ApiError | None = None) -> Response[Any]:
    audit_cursor = ctx.request.query_params.get("audit_cursor") or None
    inv, trail = await asyncio.gather(ctx.api.get(f"/v1/invoices/{quote(invoice_id, safe='')}"),
                                      ctx.api.get(f"/v1/invoices/{quote(invoice_id, safe='')}/events", limit=100,
                                                  cursor=audit_cursor))
    cust = await ctx.api.get(f"/v1/customers/{quote(inv['customer_id'], safe='')}")
    return render(ctx, "invoice.html", status=status, error=error, invoice=inv, customer=cust, trail=trail["data"],
                  audit_next=trail["next_cursor"], idem=secrets.token_hex(16))


@get("/invoices/{invoice_id:str}", include_in_schema=False)
async def invoice(request: Request[Any, Any, Any], invoice_id: str) -> Response[Any]:
    return await _page(request, lambda ctx: _invoice_page(ctx, invoice_id))


@get("/invoices/{invoice_id:str}/lines/{charge_id:str}", include_in_schema=False)
async def line_events(request: Request[Any, Any, Any], invoice_id: str, charge_id: str) -> Response[Any]:
    async def build(ctx: Ctx) -> Response[Any]:
        cursor = request.query_params.get("cursor") or None
        inv, events = await asyncio.gather(
            ctx.api.get(f"/v1/invoices/{quote(invoice_id, safe='')}"),
            ctx.api.get(f"/v1/invoices/{quote(invoice_id, safe='')}/line-items/{quote(charge_id, safe='')}/events",
                        limit=50, cursor=cursor))
        line = next((li for li in inv["line_items"] if li["charge_id"] == charge_id), None)
        return render(ctx, "line.html", invoice=inv, line=line, events=events, cursor=cursor)
    return await _page(request, build)


@post("/invoices/{invoice_id:str}/charge", include_in_schema=False)
async def charge(request: Request[Any, Any, Any], invoice_id: str) -> Response[Any]:
    async def act(ctx: Ctx, form: dict[str, str]) -> Response[Any]:
        try:
            await ctx.api.post(f"/v1/invoices/{quote(invoice_id, safe='')}/charge", {},
                               idempotency_key=form.get("idem") or None)
        except ApiError as err:
            if err.status == HTTPStatus.UNAUTHORIZED or err.code.endswith("_NOT_FOUND"):
                raise
            return await _invoice_page(ctx, invoice_id, status=err.status, error=err)
        return _redirect(f"{BASE}/invoices/{invoice_id}", "charged")
    return await _form(request, act)


@post("/invoices/{invoice_id:str}/archive", include_in_schema=False)
async def archive(request: Request[Any, Any, Any], invoice_id: str) -> Response[Any]:
    async def act(ctx: Ctx, form: dict[str, str]) -> Response[Any]:
        try:
            await ctx.api.post(f"/v1/invoices/{quote(invoice_id, safe='')}/archive",
                               {"reason": form.get("reason", "").strip()}, idempotency_key=form.get("idem") or None)
        except ApiError as err:
            if err.status == HTTPStatus.UNAUTHORIZED or err.code.endswith("_NOT_FOUND"):
                raise
            return await _invoice_page(ctx, invoice_id, status=err.status, error=err)
        return _redirect(f"{BASE}/invoices/{invoice_id}", "archived")
    return await _form(request, act)


# ---- plans and metrics ------------------------------------------------------------------
@get("/plans", include_in_schema=False)
async def plans(request: Request[Any, Any, Any]) -> Response[Any]:
    async def build(ctx: Ctx) -> Response[Any]:
        cursor = request.query_params.get("cursor") or None
        page = await ctx.api.get("/v1/price-plans", limit=PAGE_SIZE, cursor=cursor)
        return render(ctx, "plans.html", rows=page["data"], next_cursor=page["next_cursor"], cursor=cursor)
    return await _page(request, build)


SIDE_BY_SIDE = 4


def _version_arg(request: Request[Any, Any, Any], name: str, default: int, highest: int) -> int:
    try:
        value = int(request.query_params.get(name, default))
    except ValueError:
        return default
    return value if 1 <= value <= highest else default


@get("/plans/{plan_id:str}", include_in_schema=False)
async def plan(request: Request[Any, Any, Any], plan_id: str) -> Response[Any]:
    async def build(ctx: Ctx) -> Response[Any]:
        base = f"/v1/price-plans/{quote(plan_id, safe='')}"
        latest = await ctx.api.get(base)
        highest = int(latest["version"])
        a = _version_arg(request, "a", max(highest - 1, 1), highest)
        b = _version_arg(request, "b", highest, highest)
        shown = sorted({*range(max(1, highest - SIDE_BY_SIDE + 1), highest + 1), a, b})
        fetched = await asyncio.gather(*(ctx.api.get(f"{base}/versions/{n}") for n in shown))
        versions = {int(v["version"]): v for v in fetched}
        changes = plan_changes(versions[a], versions[b]) if a != b else []
        side = [versions[n] for n in sorted(versions)][-SIDE_BY_SIDE:]
        return render(ctx, "plan.html", plan=latest, versions=side, a=a, b=b, changes=changes,
                      all_versions=list(range(1, highest + 1)))
    return await _page(request, build)


@get("/metrics", include_in_schema=False)
async def metrics(request: Request[Any, Any, Any]) -> Response[Any]:
    async def build(ctx: Ctx) -> Response[Any]:
        cursor = request.query_params.get("cursor") or None
        page = await ctx.api.get("/v1/metrics", limit=PAGE_SIZE, cursor=cursor)
        return render(ctx, "metrics.html", rows=page["data"], next_cursor=page["next_cursor"], cursor=cursor)
    return await _page(request, build)


def not_found_page(request: Request[Any, Any, Any], exc: HTTPException) -> Response[str]:
    """Dashboard paths that match no page (or a bad method) get a page, not the API's JSON error."""
    session = read_session(request)
    err = ApiError(exc.status_code, "NOT_FOUND" if exc.status_code == HTTPStatus.NOT_FOUND else "HTTP_ERROR",
                   f"No dashboard page at {request.url.path}." if exc.status_code == HTTPStatus.NOT_FOUND else str(exc.detail))
    return _html("error.html", status=exc.status_code, session=session, notice=None, path=request.url.path, error=err,
                 link=None)


HANDLERS = [sign_in_form, sign_in, sign_out, overview, customers, customer, create_invoice, invoices, invoice,
            line_events, charge, archive, plans, plan, metrics]
