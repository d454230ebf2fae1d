"""How numbers and instants read on a page: money in its currency, quantities grouped, times local with UTC kept.

Amounts arrive as integer minor units and prices as decimal strings (spec §4); both are
formatted from exact ``Decimal`` values, never floats, so what a page shows is the API's
figure to the last digit. Times are written in UTC on the server; ``dashboard.js`` rewrites
each ``<time>`` into the viewer's zone and leaves the UTC instant in its ``title``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from markupsafe import Markup, escape

from abaxus.money import CURRENCIES

__all__ = ["FILTERS", "local_time", "money", "price", "quantity", "utc_text"]

# Symbols people read without a code; every other currency is written "1,234.567 KWD".
_SYMBOLS = {"usd": "$", "eur": "€", "gbp": "£", "jpy": "¥", "inr": "₹", "krw": "₩", "cny": "CN¥", "cad": "CA$",
            "aud": "A$", "nzd": "NZ$", "brl": "R$", "mxn": "MX$", "hkd": "HK$", "chf": "CHF "}
MINUS = "\u2212"


def _grouped(value: Decimal, places: int | None = None) -> str:
    return f"{abs(value):,.{places}f}" if places is not None else f"{abs(value.normalize()):,f}"


def _with_currency(body: str, negative: bool, currency: str) -> str:
    code = (currency or "").lower()
    sign = MINUS if negative else ""
    if code in _SYMBOLS:
        return f"{sign}{_SYMBOLS[code]}{body}"
    return f"{sign}{body} {code.upper()}".strip()


def money(minor: Any, currency: str) -> str:
    """Integer minor units in the currency's own exponent: ``14900, "usd"`` → ``$149.00``; ``1250, "kwd"`` → ``1.250 KWD``."""
    if minor is None:
        return "—"
    places = CURRENCIES.get((currency or "").lower(), 2)
    major = Decimal(int(minor)).scaleb(-places)
    return _with_currency(_grouped(major, places), major < 0, currency)


def price(value: Any, currency: str) -> str:
    """A plan price (a decimal string, major units) with every digit it has: ``"0.00005"`` → ``$0.00005``."""
    if value is None:
        return "—"
    d = Decimal(str(value))
    places = max(CURRENCIES.get((currency or "").lower(), 2), -int(d.normalize().as_tuple().exponent))
    return _with_currency(_grouped(d, max(places, 0)), d < 0, currency)


def quantity(value: Any) -> str:
    """An exact quantity, digits grouped, no trailing zeros: ``1200000`` → ``1,200,000``; ``30.5`` stays."""
    if value is None:
        return "—"
    d = Decimal(str(value))
    if d == d.to_integral_value():
        return f"{int(d):,}".replace("-", MINUS)
    text = _grouped(d)
    return (MINUS if d < 0 else "") + text


def _parse(instant: str) -> datetime:
    return datetime.fromisoformat(instant.replace("Z", "+00:00")).astimezone(UTC)


def local_time(instant: Any, style: str = "datetime") -> Markup:
    """A ``<time>`` element: UTC text for readers without script, the viewer's zone with it; UTC on hover."""
    if not instant:
        return Markup("—")
    try:
        dt = _parse(str(instant))
    except ValueError:
        return Markup(escape(str(instant)))
    fmt = "%Y-%m-%d" if style == "date" else "%Y-%m-%d %H:%M:%S"
    utc = dt.strftime(fmt) + " UTC"
    return Markup('<time datetime="{iso}" title="{utc}" data-style="{style}">{utc}</time>').format(
        iso=str(instant), utc=utc, style=style)


def utc_text(instant: Any) -> str:
    """An instant as plain UTC text, for places where markup cannot go (chart tooltips)."""
    return _parse(str(instant)).strftime("%Y-%m-%d %H:%M UTC") if instant else "—"


FILTERS = {"money": money, "price": price, "quantity": quantity, "local_time": local_time, "utc_text": utc_text}
