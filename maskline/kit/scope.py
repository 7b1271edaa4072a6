"""The one helper through which every organisation-owned query is scoped."""

from __future__ import annotations

from typing import Any, Protocol, TypeVar

from sqlalchemy import Select, select


class OrgOwned(Protocol):
    org_id: Any


Row = TypeVar("Row", bound=OrgOwned)


def scoped(model: type[Row], org_id: str) -> Select[Row]:
    """``SELECT model WHERE model.org_id = :org_id``: start every tenant query here."""
    column: Any = model.org_id
    return select(model).where(column == org_id)
