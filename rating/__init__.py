"""Pure pricing over Arrow arrays: no clock, no I/O, no floats.

``rate`` prices a column of exact quantities under one charge's terms (``PerUnit``,
``Tiered``, ``Volume``, ``Package`` or ``FlatFee``: one type per pricing model, so it
dispatches on the type) and returns integer minor-unit amounts with their tier breakdown.
Each tier's exact amount is rounded once, half away from zero (Arrow's ``half_towards_infinity``; Arrow's ``half_up`` would round
-0.125 to -0.12), so tier rows add up to the line and lines to the invoice (§4).
"""

from abaxus.rating._models import (
    AmountOverflow,
    FlatFee,
    Package,
    PerUnit,
    Rated,
    Terms,
    Tier,
    Tiered,
    Volume,
    rate,
)

__all__ = ["AmountOverflow", "FlatFee", "Package", "PerUnit", "Rated", "Terms", "Tier", "Tiered", "Volume", "rate"]
