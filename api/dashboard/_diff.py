"""What changed between two versions of a price plan, as rows a person reads: subject, before, after.

Charges are matched by ``id`` and entitlements by ``feature_key`` (both stable across
versions), so a re-priced tier reads as one change, not as a charge removed and another added.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Change", "plan_changes"]

_PLAN_FIELDS = ("name", "currency", "billing_period", "changelog", "effective_from", "status")
_CHARGE_FIELDS = ("pricing_model", "metric_key", "description", "unit_price", "package_size", "package_price", "amount")


@dataclass(frozen=True)
class Change:
    kind: str  # "added", "removed" or "changed"
    subject: str
    before: str
    after: str


def _text(value: Any) -> str:
    if value is None:
        return "—"
    return str(value)


def _tiers(tiers: list[dict[str, Any]] | None) -> str:
    if not tiers:
        return "—"
    parts = []
    for t in tiers:
        bound = "∞" if t.get("up_to") is None else f"{t['up_to']:,}"
        flat = f" + {t['flat_amount']}" if str(t.get("flat_amount", "0")).strip("0.") else ""
        parts.append(f"≤ {bound} @ {t['unit_price']}{flat}")
    return "; ".join(parts)


def _charge_summary(c: dict[str, Any]) -> str:
    bits = [c.get("pricing_model", "?")]
    for name in ("metric_key", "unit_price", "package_size", "package_price", "amount"):
        if c.get(name) is not None:
            bits.append(f"{name} {c[name]}")
    if c.get("tiers"):
        bits.append("tiers " + _tiers(c["tiers"]))
    return ", ".join(str(b) for b in bits)


def _entitlement_summary(e: dict[str, Any]) -> str:
    tail = f" of {e['metric_key']}" if e.get("metric_key") else ""
    return f"{e.get('type')} {e.get('value')}{tail}"


def plan_changes(a: dict[str, Any], b: dict[str, Any]) -> list[Change]:  # noqa: PLR0912 - one branch per field the diff shows
    """Every difference from version ``a`` to version ``b``, plan fields first, then charges, then entitlements."""
    out: list[Change] = []
    for name in _PLAN_FIELDS:
        if a.get(name) != b.get(name):
            out.append(Change("changed", name, _text(a.get(name)), _text(b.get(name))))
    before = {c["id"]: c for c in a.get("charges", [])}
    after = {c["id"]: c for c in b.get("charges", [])}
    for cid, c in before.items():
        if cid not in after:
            out.append(Change("removed", f"charge {cid}", _charge_summary(c), "—"))
    for cid, c in after.items():
        old = before.get(cid)
        if old is None:
            out.append(Change("added", f"charge {cid}", "—", _charge_summary(c)))
            continue
        for name in _CHARGE_FIELDS:
            if old.get(name) != c.get(name):
                out.append(Change("changed", f"charge {cid}: {name}", _text(old.get(name)), _text(c.get(name))))
        if old.get("tiers") != c.get("tiers"):
            out.append(Change("changed", f"charge {cid}: tiers", _tiers(old.get("tiers")), _tiers(c.get("tiers"))))
    ents_a = {e["feature_key"]: e for e in a.get("entitlements", [])}
    ents_b = {e["feature_key"]: e for e in b.get("entitlements", [])}
    for key, e in ents_a.items():
        if key not in ents_b:
            out.append(Change("removed", f"entitlement {key}", _entitlement_summary(e), "—"))
    for key, e in ents_b.items():
        old_e = ents_a.get(key)
        if old_e is None:
            out.append(Change("added", f"entitlement {key}", "—", _entitlement_summary(e)))
        elif old_e != e:
            out.append(Change("changed", f"entitlement {key}", _entitlement_summary(old_e), _entitlement_summary(e)))
    return out
