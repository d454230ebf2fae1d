"""Typed request and response bodies of the API v1 (msgspec structs, frozen, keyword-only)."""

from abaxus_client.models._base import UNSET, DecimalLike, Page, Request, Response, Timestamp, UnsetType
from abaxus_client.models.billing import *  # noqa: F403
from abaxus_client.models.billing import __all__ as _billing
from abaxus_client.models.catalog import *  # noqa: F403
from abaxus_client.models.catalog import __all__ as _catalog
from abaxus_client.models.events import *  # noqa: F403
from abaxus_client.models.events import __all__ as _events

__all__ = ["UNSET", "DecimalLike", "Page", "Request", "Response", "Timestamp", "UnsetType",  # noqa: PLE0604 - strings all:
           *_billing, *_catalog, *_events]  # the submodules' own __all__ lists, unpacked
