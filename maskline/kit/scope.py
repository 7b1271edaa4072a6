"""The one place that compares a row's organisation: every tenant query is scoped here.

``scoped`` starts a tenant SELECT; ``owned_by`` is the same condition for the
statements it cannot start (UPDATE, DELETE, aggregates, column selects,
subqueries, joins). ``tests/adversarial/test_org_scope.py`` fails on an organisation
comparison written anywhere else, so a query cannot forget, or re-spell, the rule.
Queries that deliberately span organisations (workers, retention, the watchdog,
operator commands) do not filter on the organisation at all.
"""

from __future__ import annotations

from typing import Any, Protocol, TypeVar

from sqlalchemy import ColumnElement, Select, SQLColumnExpression, or_, select


class OrgOwned(Protocol):
    org_id: Any


Row = TypeVar("Row", bound=OrgOwned)


def owned_by(model: type[OrgOwned], org_id: str | SQLColumnExpression[str]) -> ColumnElement[bool]:
    """``model.org_id = :org_id``: the condition of every tenant statement; given a
    column (``Organisation.id``), the join of a row to its organisation."""
    condition: ColumnElement[bool] = model.org_id == org_id
    return condition


def unowned(model: type[OrgOwned]) -> ColumnElement[bool]:
    """``model.org_id IS NULL``: rows of no organisation, shared by all (the number pool)."""
    condition: ColumnElement[bool] = model.org_id.is_(None)
    return condition


def owned_by_or_shared(model: type[OrgOwned], org_id: str) -> ColumnElement[bool]:
    """The organisation's own rows and the shared ones."""
    return or_(owned_by(model, org_id), unowned(model))


def scoped(model: type[Row], org_id: str) -> Select[Row]:
    """``SELECT model WHERE model.org_id = :org_id``: start every tenant query here."""
    return select(model).where(owned_by(model, org_id))
