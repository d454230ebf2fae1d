"""The vectorised rating core against the spec's examples and a Decimal oracle."""

from __future__ import annotations

from decimal import Decimal

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from abaxus.rating import AmountOverflow, FlatFee, Package, PerUnit, Terms, Tier, Tiered, Volume, rate
from oracle import price

D = Decimal


def q(*values: object) -> pa.Array:
    return pa.array([D(str(v)) for v in values], pa.decimal128(38, 10))


GROWTH = (Tier(100000, D(0)), Tier(1000000, D("0.0001")), Tier(None, D("0.00005")))
VOLUME = (Tier(1000, D("0.10")), Tier(10000, D("0.07"), D("20.00")), Tier(None, D("0.05")))


def test_spec_examples_for_all_five_models():
    assert rate(q(500000), PerUnit(D("0.0002")), 2).amount.to_pylist() == [10000]
    tiered = rate(q(1200000), Tiered(GROWTH), 2)
    assert tiered.amount.to_pylist() == [10000]
    assert [a[0].as_py() for a in tiered.tier_amount] == [0, 9000, 1000]
    assert rate(q(1374923), Tiered(GROWTH), 2).amount.to_pylist() == [10875]
    assert rate(q(1205000), Tiered(GROWTH), 2).amount.to_pylist() == [10025]
    assert rate(q(1000, "1000.5"), Volume(VOLUME), 2).amount.to_pylist() == [10000, 9004]
    package = rate(q(1500, 2001), Package(D(1000), D("8.00")), 2)
    assert package.amount.to_pylist() == [1600, 2400]
    assert package.packages.to_pylist() == [2, 3]
    assert rate(q(1), FlatFee(D("49.00")), 2).amount.to_pylist() == [4900]


def test_rounding_is_once_per_tier_half_away_from_zero():
    small = (Tier(10, D("0.0005")), Tier(None, D("0.00025")))
    assert rate(q(30), Tiered(small), 2).amount.to_pylist() == [2]  # not round(0.010) = 1
    assert rate(q(12345), PerUnit(D("0.001")), 2).amount.to_pylist() == [1235]
    assert rate(q(3), PerUnit(D("0.5")), 0).amount.to_pylist() == [2]  # jpy
    assert rate(q("1.25"), PerUnit(D(1)), 3).amount.to_pylist() == [1250]  # kwd


def test_negative_and_zero_quantities_cost_nothing():
    terms: list[Terms] = [PerUnit(D(1)), Tiered(GROWTH), Volume(VOLUME), Package(D(10), D(1))]
    for t in terms:
        assert rate(q(0, -5), t, 2).amount.to_pylist() == [0, 0], t


prices = st.decimals(min_value=0, max_value=D("99999"), places=6, allow_nan=False, allow_infinity=False)
quantities = st.one_of(st.decimals(min_value=-10, max_value=D("10") ** 9, places=4, allow_nan=False, allow_infinity=False),
                       st.integers(min_value=0, max_value=10 ** 7).map(D))


@st.composite
def tier_sets(draw: st.DrawFn) -> tuple[Tier, ...]:
    bounds = sorted(set(draw(st.lists(st.integers(min_value=1, max_value=10 ** 7), min_size=0, max_size=5))))
    ups: list[int | None] = [*bounds, None]
    return tuple(Tier(u, draw(prices), draw(st.one_of(st.just(D(0)), prices))) for u in ups)


@settings(max_examples=300, deadline=None)
@given(tiers=tier_sets(), qs=st.lists(quantities, min_size=1, max_size=20), exponent=st.sampled_from([0, 2, 3]),
       model=st.sampled_from(["tiered", "volume"]))
def test_tiered_and_volume_match_the_oracle(tiers, qs, exponent, model):
    # Tier boundaries exactly at up_to are always included.
    qs = qs + [D(t.up_to) for t in tiers if t.up_to is not None]
    rated = rate(pa.array(qs, pa.decimal128(38, 10)), (Tiered(tiers) if model == "tiered" else Volume(tiers)), exponent)
    oracle_terms = {"tiers": [(t.up_to, t.unit_price, t.flat_amount) for t in tiers]}
    for i, quantity in enumerate(qs):
        expected, tier_amounts = price(model, quantity, oracle_terms, exponent)
        assert rated.amount[i].as_py() == expected
        got_tiers = [a[i].as_py() for a in rated.tier_amount]
        assert sum(got_tiers) == rated.amount[i].as_py()  # tier rows add up to the line
        if model == "tiered":
            assert got_tiers == tier_amounts
            assert sum(t[i].as_py() for t in rated.tier_quantity) == max(quantity, 0)


@settings(max_examples=300, deadline=None)
@given(qs=st.lists(quantities, min_size=1, max_size=20), unit=prices, size=st.decimals(min_value=D("0.001"),
       max_value=D(10000), places=3), exponent=st.sampled_from([0, 2, 3]))
def test_per_unit_package_and_flat_fee_match_the_oracle(qs, unit, size, exponent):
    arr = pa.array(qs, pa.decimal128(38, 10))
    cases: list[tuple[Terms, str, dict[str, Decimal]]] = [
        (PerUnit(unit), "per_unit", {"unit_price": unit}),
        (Package(size, unit), "package", {"package_size": size, "package_price": unit}),
        (FlatFee(unit), "flat_fee", {"amount": unit})]
    for terms, model, oracle_terms in cases:
        expected = [price(model, quantity, oracle_terms, exponent)[0] for quantity in qs]
        try:
            got: list[int] | str = rate(arr, terms, exponent).amount.to_pylist()
        except AmountOverflow:
            got = "overflow"
        # Amounts beyond int64 minor units are refused for the whole table, never wrapped.
        assert got == ("overflow" if any(abs(a) > 2 ** 63 - 1 for a in expected) else expected)


def test_huge_and_tiny_values_stay_exact():
    big = D("999999999999999999.9999999999")
    assert rate(q(big), PerUnit(D("0.000001")), 3).amount.to_pylist() == [
        price("per_unit", big, {"unit_price": D("0.000001")}, 3)[0]] == [1000000000000000]
    assert rate(q("0.0000000001"), PerUnit(D("0.000000000001")), 2).amount.to_pylist() == [0]
    assert rate(q("12345678.9"), PerUnit(D("0.000000000001")), 3).amount.to_pylist() == [0]
    assert rate(q("1000000000"), PerUnit(D("0.000005")), 2).amount.to_pylist() == [500000]


def test_an_amount_beyond_int64_is_refused_not_wrapped():
    with pytest.raises(AmountOverflow):
        rate(q("922355427030.5916"), PerUnit(D("9999.802426")), 3)
