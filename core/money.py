"""Money and exact numbers: ISO 4217 exponents, price parsing and the contract's formats.

Amounts are integers in the currency's minor unit; prices and quantities are ``Decimal``
parsed from the JSON text, never from a binary float.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from abaxus.errors import InvalidInput

__all__ = [
    "CURRENCIES",
    "exponent",
    "format_price",
    "format_quantity",
    "normalize_currency",
    "parse_decimal",
    "round_minor",
]

_ZERO_DECIMAL = "bif clp djf gnf isk jpy kmf krw pyg rwf ugx uyi vnd vuv xaf xof xpf".split()
_THREE_DECIMAL = "bhd iqd jod kwd lyd omr tnd".split()
_FOUR_DECIMAL = "clf uyw".split()
_TWO_DECIMAL = """aed afn all amd ang aoa ars aud awg azn bam bbd bdt bgn bmd bnd bob bov brl bsd btn bwp byn bzd
cad cdf che chf chw cny cop cou crc cuc cup cve czk dkk dop dzd egp ern etb eur fjd fkp gbp gel ghs gip gmd gtq
gyd hkd hnl hrk htg huf idr ils inr irr jmd kes kgs khr kpw kyd kzt lak lbp lkr lrd lsl mad mdl mga mkd mmk mnt
mop mru mur mvr mwk mxn mxv myr mzn nad ngn nio nok npr nzd pab pen pgk php pkr pln qar ron rsd rub sar sbd scr
sdg sek sgd shp sle sll sos srd ssp stn svc syp szl thb tjs tmt top try ttd twd tzs uah usd usn uyu uzs ves vef
wst xcd xcg xsu yer zar zmw zwg zwl""".split()

CURRENCIES: dict[str, int] = {
    **dict.fromkeys(_TWO_DECIMAL, 2),
    **dict.fromkeys(_ZERO_DECIMAL, 0),
    **dict.fromkeys(_THREE_DECIMAL, 3),
    **dict.fromkeys(_FOUR_DECIMAL, 4),
}


def normalize_currency(code: object, field: str) -> str:
    """Lower-case an ISO 4217 code; upper-case input is accepted."""
    if not isinstance(code, str) or code.lower() not in CURRENCIES:
        raise InvalidInput("INVALID_CURRENCY", "Use an ISO 4217 currency code such as usd, eur or jpy.", field)
    return code.lower()


def exponent(currency: str) -> int:
    return CURRENCIES[currency]


def parse_decimal(
    value: object,
    field: str,
    *,
    max_places: int,
    lower: Decimal | None = None,
    upper: Decimal | None = None,
    lower_inclusive: bool = True,
) -> Decimal:
    """An exact decimal from a JSON number or decimal string, within places and range.

    ``upper`` is exclusive; ``lower`` is inclusive unless told otherwise.
    """
    if isinstance(value, bool) or not isinstance(value, (int, str, Decimal)):
        raise InvalidInput("INVALID_DECIMAL", "Send a number or a decimal string such as \"0.0001\".", field)
    try:
        d = Decimal(value) if not isinstance(value, Decimal) else value
    except InvalidOperation:
        raise InvalidInput("INVALID_DECIMAL", "Send a finite decimal number such as 0.0001.", field) from None
    if not d.is_finite():
        raise InvalidInput("INVALID_DECIMAL", "Send a finite decimal number such as 0.0001.", field)
    exp = d.as_tuple().exponent
    assert isinstance(exp, int)
    if -exp > max_places and d != d.quantize(Decimal(1).scaleb(-max_places), rounding=ROUND_HALF_UP):
        raise InvalidInput("INVALID_DECIMAL", f"Use at most {max_places} decimal places.", field)
    if lower is not None and (d < lower or (not lower_inclusive and d == lower)):
        raise InvalidInput("VALUE_OUT_OF_RANGE", f"The value must be {'at least' if lower_inclusive else 'above'} {lower}.",
                           field)
    if upper is not None and d >= upper:
        raise InvalidInput("VALUE_OUT_OF_RANGE", f"The value must be below {upper:,}.", field)
    return d


def format_price(price: Decimal, currency: str) -> str:
    """A price as a plain decimal string with at least the currency's decimals: 49 → "49.00"."""
    places = exponent(currency)
    text = format(price.normalize(), "f")
    whole, _, frac = text.partition(".")
    frac = frac.rstrip("0")
    if len(frac) < places:
        frac = frac + "0" * (places - len(frac))
    return f"{whole}.{frac}" if frac else whole


def format_quantity(q: Decimal) -> Decimal:
    """A quantity in plain notation without trailing zeros, encoded as a JSON number."""
    if q == 0:
        return Decimal(0)
    return Decimal(format(q.normalize(), "f"))


def round_minor(major: Decimal, currency: str) -> int:
    """Round an exact major-unit amount once to the minor unit, half away from zero (§4)."""
    return int(major.scaleb(exponent(currency)).quantize(Decimal(1), rounding=ROUND_HALF_UP))
