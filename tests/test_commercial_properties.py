"""Commercial terms (minimum, discounts, credits) against the Decimal oracle, by hypothesis.

The pure functions of ``billing.commercial`` meet ``oracle.minimum_true_up``, ``oracle.discounts``
and ``oracle.credits`` on random invoices; the properties every invoice must keep are checked on
the same draws: the lines add up to the total, the total is never negative (unless proration
credits alone make it so), no discount takes more than its lines and no grant gives more than it
holds, whether one invoice draws on the pool or many draw one after another. Last, the drawdown
runs against the real metadata store (SQLite and PostgreSQL) from threads issuing at once, as the
issuing transactions do; ``test_commercial_terms.py`` does the same through the whole app.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select

import oracle
from abaxus.billing.commercial import (
    CREDIT,
    DISCOUNT,
    Commitment,
    Coupon,
    Grant,
    apply_terms,
    credit_lines,
    minimum_line,
    round_half_up,
)
from abaxus.billing.credits import create_grant, record_drawdown, usable_grants
from abaxus.billing.customers import create_customer
from abaxus.clock import ManualClock
from abaxus.money import exponent
from abaxus.schemas.catalog import CustomerCreate
from abaxus.schemas.commercial import CreditGrantCreate
from abaxus.store.metadata import migrate, open_engine
from abaxus.store.tables import credit_grants, credit_ledger
from conftest import _reset_pg

D = Decimal
AT = 1_777_593_599_000  # 2026-04-30T23:59:59Z, the period_end the credits are judged at
DAY = 86_400_000
CURRENCIES = ["usd", "jpy", "kwd"]
CHARGE_IDS = ["chg_1", "chg_2", "chg_3", "seats"]


@st.composite
def usage_lines(draw: st.DrawFn) -> list[dict[str, Any]]:
    ids = draw(st.lists(st.sampled_from(CHARGE_IDS), min_size=1, max_size=4, unique=True))
    lines = []
    for cid in ids:
        model = draw(st.sampled_from(["per_unit", "tiered", "volume", "package", "flat_fee"]))
        prefix = draw(st.sampled_from(["", "plan_old:v1:"]))  # an earlier version's line after a plan change
        lines.append({"charge_id": prefix + cid, "pricing_model": model,
                      "amount": draw(st.integers(min_value=0, max_value=10 ** 7))})
    if len({li["charge_id"] for li in lines}) != len(lines):
        lines = lines[:1]
    return lines


commitments = st.lists(st.tuples(st.decimals(min_value=0, max_value=D(10) ** 6, places=4, allow_nan=False,
                                             allow_infinity=False), st.integers(min_value=0, max_value=31)),
                       max_size=2)
coupons = st.lists(st.builds(
    lambda i, pct, off, scope: Coupon(f"cpn_{i}", pct, None if pct is not None else off, scope),
    st.integers(0, 10 ** 6),
    st.one_of(st.none(), st.decimals(min_value=D("0.0001"), max_value=100, places=4, allow_nan=False, allow_infinity=False)),
    st.integers(min_value=1, max_value=10 ** 6),
    st.one_of(st.none(), st.lists(st.sampled_from([*CHARGE_IDS, "minimum"]), min_size=1, max_size=3,
                                  unique=True).map(tuple))), max_size=3, unique_by=lambda c: c.id)
grants = st.lists(st.builds(
    lambda i, left, start, length, priority, created: Grant(
        f"cgr_{i:04d}", left, AT + start * DAY, None if length is None else AT + (start + length) * DAY, priority, created),
    st.integers(0, 9999), st.integers(min_value=0, max_value=10 ** 6), st.integers(min_value=-40, max_value=2),
    st.one_of(st.none(), st.integers(min_value=0, max_value=60)), st.integers(min_value=0, max_value=3),
    st.integers(min_value=0, max_value=5)), max_size=5, unique_by=lambda g: g.id)


def _as_oracle(c: Coupon) -> dict[str, Any]:
    return {"id": c.id, "percent_off": c.percent_off, "amount_off": c.amount_off, "applies_to": c.applies_to}


def _grant_dict(g: Grant) -> dict[str, Any]:
    return {"id": g.id, "remaining": g.remaining, "effective_at": g.effective_at, "expires_at": g.expires_at,
            "priority": g.priority, "created_at": g.created_at}


@settings(max_examples=400, deadline=None)
@given(lines=usage_lines(), proration=st.lists(st.integers(min_value=-10 ** 6, max_value=-1), max_size=2),
       commitments=commitments, period_days=st.sampled_from([28, 29, 30, 31]), coupons=coupons, grants=grants,
       currency=st.sampled_from(CURRENCIES))
def test_terms_match_the_oracle_and_the_lines_add_up(lines, proration, commitments, period_days, coupons, grants,
                                                     currency):
    days_capped = [(a, min(d, period_days)) for a, d in commitments]
    priced = list(lines)
    true_up = minimum_line(priced, currency, [Commitment(a, d) for a, d in days_capped], period_days)
    assert (true_up["amount"] if true_up else 0) == oracle.minimum_true_up(lines, exponent(currency), days_capped,
                                                                           period_days)
    if true_up:
        assert true_up["amount"] > 0
        assert true_up["charge_id"] == "minimum"
        priced.append(true_up)
    priced += [{"charge_id": f"proration:amd_{i}:chg_1", "pricing_model": "proration_credit", "amount": a}
               for i, a in enumerate(proration)]

    applied = apply_terms(priced, currency, coupons, grants, AT)
    invoice = priced + applied.lines
    discount = [li for li in applied.lines if li["pricing_model"] == DISCOUNT]
    credit = [li for li in applied.lines if li["pricing_model"] == CREDIT]
    assert applied.lines == discount + credit  # discounts first, then credits
    assert [(li["charge_id"].removeprefix("discount:"), -li["amount"]) for li in discount] == oracle.discounts(
        priced, [_as_oracle(c) for c in coupons])
    before_credits = sum(li["amount"] for li in priced + discount)
    assert [(li["charge_id"].removeprefix("credit:"), -li["amount"]) for li in credit] == oracle.credits(
        before_credits, [_grant_dict(g) for g in grants], AT)

    total = sum(li["amount"] for li in invoice)
    assert all(isinstance(li["amount"], int) for li in invoice)
    assert all(li["amount"] < 0 for li in applied.lines)
    discountable = sum(li["amount"] for li in priced if li["pricing_model"] != "proration_credit")
    assert -sum(li["amount"] for li in discount) <= discountable
    assert total >= min(0, before_credits)
    assert (total >= 0 if not proration else True)
    by_id = {g.id: g for g in grants}
    assert all(applied.drawdown[g] <= by_id[g].remaining for g in applied.drawdown)
    assert sum(applied.drawdown.values()) == -sum(li["amount"] for li in credit) <= max(before_credits, 0)
    usable = sum(g.remaining for g in grants if g.effective_at <= AT and (g.expires_at is None or g.expires_at > AT))
    assert sum(applied.drawdown.values()) == min(max(before_credits, 0), usable)


@settings(max_examples=300, deadline=None)
@given(totals=st.lists(st.integers(min_value=0, max_value=3 * 10 ** 5), min_size=1, max_size=8), grants=grants)
def test_invoices_drawing_one_after_another_never_overdraw_a_grant(totals, grants):
    """What the issuing transactions do in turn: each sees the remaining amounts the previous left."""
    pool = {g.id: g for g in grants}
    drawn: dict[str, int] = {}
    for amount in totals:
        lines = [{"charge_id": "chg_1", "pricing_model": "per_unit", "amount": amount}]
        credit, take = credit_lines(lines, pool.values(), AT)
        assert amount + sum(li["amount"] for li in credit) >= 0
        for gid, x in take.items():
            g = pool[gid]
            pool[gid] = Grant(g.id, g.remaining - x, g.effective_at, g.expires_at, g.priority, g.created_at)
            drawn[gid] = drawn.get(gid, 0) + x
    initial = {g.id: g.remaining for g in grants}
    assert all(0 <= drawn[g] <= initial[g] for g in drawn)
    usable = sum(g.remaining for g in grants if g.effective_at <= AT and (g.expires_at is None or g.expires_at > AT))
    assert sum(drawn.values()) == min(sum(totals), usable)


def test_round_half_up_rounds_halves_away_from_zero_once():
    assert [round_half_up(Fraction(n, d)) for n, d in [(1, 2), (-1, 2), (3, 2), (5, 3), (-5, 3), (4900 * 10, 30), (0, 1)]] == [
        1, -1, 2, 2, -2, 1633, 0]


def test_the_worked_example_of_the_docs():
    """docs/commercial-terms.md, "Worked example": the figures the page prints."""
    lines = [{"charge_id": "chg_1", "pricing_model": "tiered", "amount": 1500},
             {"charge_id": "chg_2", "pricing_model": "flat_fee", "amount": 4900}]
    true_up = minimum_line(lines, "usd", [Commitment(D("250.00"), 14)], 30)
    assert true_up is not None
    assert true_up["amount"] == 5267
    assert true_up["quantity"] == 14
    priced = [*lines, true_up]
    prepaid = Grant("cgr_prepaid", 10000, AT - 40 * DAY, None, priority=1, created_at=1)
    promo = Grant("cgr_promo", 5000, AT - 20 * DAY, AT + 32 * DAY, priority=0, created_at=2)
    applied = apply_terms(priced, "usd", [Coupon("launch", D("12.5"), applies_to=("chg_1",))], [prepaid, promo], AT)
    assert [(li["charge_id"], li["amount"]) for li in applied.lines] == [
        ("discount:launch", -188), ("credit:cgr_promo", -5000), ("credit:cgr_prepaid", -6479)]
    assert applied.drawdown == {"cgr_promo": 5000, "cgr_prepaid": 6479}
    assert applied.coupons == ["launch"]
    assert sum(li["amount"] for li in priced + applied.lines) == 0


# ---- the same drawdown against the real metadata store, from threads ------------------------
@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """A migrated metadata store (SQLite file or a reset PostgreSQL database) for the whole module."""
    if request.param == "postgres":
        url = request.getfixturevalue("pg_database")
        _reset_pg(url)
    else:
        url = f"sqlite:///{tmp_path_factory.mktemp('credits') / 'metadata.db'}"
    engine = open_engine(url)
    migrate(engine)
    yield engine
    engine.dispose()


_customers = itertools.count()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(amounts=st.lists(st.tuples(st.integers(min_value=1, max_value=20_000), st.integers(min_value=0, max_value=2),
                                  st.one_of(st.none(), st.integers(min_value=1, max_value=90))), min_size=1, max_size=4),
       totals=st.lists(st.integers(min_value=0, max_value=15_000), min_size=2, max_size=6))
def test_concurrent_invoices_of_one_customer_never_overdraw_a_grant_in_the_store(store, amounts, totals):
    """Each thread is one issuing transaction as ``Invoicing`` runs it: lock the customer's grants,
    work out the credit lines on what they hold then, record the drawdown."""
    customer_id = f"cust_p{next(_customers)}"
    clock = ManualClock(1_767_225_600_000)  # 2026-01-01: each grant in effect, none expired
    create_customer(store, CustomerCreate(id=customer_id, name="P"), clock=clock)
    made = [create_grant(store, customer_id, CreditGrantCreate(
        amount=a, currency="usd", priority=p, effective_at="2026-01-01T00:00:00Z",
        expires_at=None if days is None else f"2026-{4 + days // 31:02d}-{1 + days % 28:02d}T00:00:00Z"), clock=clock)
        for a, p, days in amounts]
    drawn: list[dict[str, int]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    gate = threading.Barrier(len(totals))

    def issue(i: int, total: int) -> None:
        try:
            gate.wait()
            with store.begin() as conn:
                pool = usable_grants(conn, [customer_id], lock=True).get((customer_id, "usd"), {})
                lines = [{"charge_id": "chg_1", "pricing_model": "per_unit", "amount": total}]
                credit, take = credit_lines(lines, pool.values(), AT)
                assert total + sum(li["amount"] for li in credit) >= 0
                record_drawdown(conn, f"inv_p{i}", customer_id, "usd", take, AT)
            with lock:
                drawn.append(take)
        except BaseException as exc:  # noqa: BLE001 - reported below: a thread's failure must fail the test
            errors.append(exc)

    threads = [threading.Thread(target=issue, args=(i, t)) for i, t in enumerate(totals)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    usable = sum(g.amount for g in made if g.expires_at is None or g.expires_at > "2026-04-30T23:59:59Z")
    given_out = {g.id: sum(d.get(g.id, 0) for d in drawn) for g in made}
    assert sum(given_out.values()) == min(sum(totals), usable)
    with store.connect() as conn:
        for g in made:
            remaining = conn.execute(select(credit_grants.c.remaining).where(credit_grants.c.id == g.id)).scalar_one()
            ledger = conn.execute(select(func.sum(credit_ledger.c.amount)).where(credit_ledger.c.grant_id == g.id)).scalar_one()
            assert 0 <= remaining == g.amount - given_out[g.id] == ledger
