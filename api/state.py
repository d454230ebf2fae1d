"""What the app factory opens at start and hands to handlers through Litestar DI."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from litestar.datastructures import State
from sqlalchemy import Engine

from abaxus.settings import Settings
from abaxus.telemetry import Telemetry

__all__ = ["Services", "services_from_state"]


@dataclass
class Services:
    settings: Settings
    engine: Engine
    telemetry: Telemetry
    # Set by the ingestion part when it starts (usage store, intake log, dataflow).
    usage: Any = None
    intake: Any = None
    dataflow: Any = None
    catalog_view: Any = None
    invoicing: Any = None
    bulk: Any = None
    payments: Any = None
    extras: dict[str, Any] = field(default_factory=dict)


def services_from_state(state: State) -> Services:
    return state.services  # type: ignore[no-any-return]
