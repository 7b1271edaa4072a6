"""SPEC §1 and §7 by construction: organisation scoping is written once, in
``maskline/kit/scope.py``. Every other module reaches an organisation's rows through
``scoped()`` or ``owned_by()``, so a query cannot forget the rule or re-spell it
differently. This reads the package's source with ``ast`` (no database): a new raw
organisation filter anywhere else fails it.

What counts as a raw filter is how one would be written by hand: a comparison that
involves an ``org_id`` column (either side, inside a function or a tuple, in SQL or
in Python on a loaded row), a comparison method on the column (``in_``, ``is_``,
``__eq__``…), an operator function over it (``operators.eq``), ``filter_by(org_id=…)``,
SQL text that compares ``org_id``, the column bound to a name to compare later, or
``session.get`` on a table whose primary key holds ``org_id``.
Reading or writing the column (``select(X.org_id)``, ``values(org_id=…)``, an index,
``returning``) is not a filter. Queries that span organisations on purpose (workers,
retention, the watchdog, operator commands) simply do not filter on it.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import maskline
from maskline.kit.db import Base
from maskline.tables import metadata

PACKAGE = Path(maskline.__file__).parent
SCOPE = PACKAGE / "kit" / "scope.py"
COLUMN = "org_id"

# Methods on the column that do not compare it (ordering, naming).
HARMLESS_METHODS = frozenset({"asc", "desc", "label", "nulls_first", "nulls_last"})
# Methods that compare whatever they are called on, when that involves the column.
COMPARING_METHODS = frozenset(
    {
        "__eq__",
        "__ne__",
        "in_",
        "not_in",
        "notin_",
        "is_",
        "is_not",
        "isnot",
        "is_distinct_from",
        "is_not_distinct_from",
        "isnot_distinct_from",
        "between",
        "like",
        "ilike",
        "not_like",
        "not_ilike",
        "notlike",
        "notilike",
        "startswith",
        "endswith",
        "contains",
        "op",
        "bool_op",
    }
)
# ``operator`` and ``sqlalchemy.sql.operators`` functions that compare their arguments.
OPERATOR_FUNCTIONS = frozenset(
    {"eq", "ne", "is_", "is_not", "isnot", "in_op", "not_in_op", "notin_op", "is_distinct_from"}
)
# Functions that name a column by a string.
NAMING_FUNCTIONS = frozenset({"getattr", "column", "literal_column"})
# Tables keyed by the organisation: ``session.get(Wallet, org_id)`` is a filter too.
ORG_KEYED = frozenset(
    mapper.class_.__name__
    for mapper in Base.registry.mappers
    if COLUMN in {column.key for column in mapper.primary_key}
)
SQL_COMPARISON = re.compile(
    rf"\b{COLUMN}\b[\"'`]?\s*(=|!=|<>|\bin\b|\bis\b|\blike\b|\bbetween\b)", re.IGNORECASE
)


def _name_of(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def _is_column(node: ast.AST) -> bool:
    """``X.org_id``, ``t.c["org_id"]``, ``getattr(X, "org_id")``, ``column("org_id")``."""
    if isinstance(node, ast.Attribute):
        return node.attr == COLUMN
    if isinstance(node, ast.Subscript):
        return isinstance(node.slice, ast.Constant) and node.slice.value == COLUMN
    if isinstance(node, ast.Call) and _name_of(node.func) in NAMING_FUNCTIONS:
        return any(isinstance(a, ast.Constant) and a.value == COLUMN for a in node.args)
    return False


def _involves_column(node: ast.AST) -> bool:
    return any(_is_column(inner) for inner in ast.walk(node))


def _is_table_column(node: ast.expr) -> bool:
    """The column of a class or table (not a loaded row's value): ``Model.org_id``,
    ``table.c.org_id``, or one named by a string."""
    if not _is_column(node):
        return False
    if not isinstance(node, ast.Attribute):
        return True
    owner = node.value
    if isinstance(owner, ast.Name):
        return owner.id[:1].isupper()
    return isinstance(owner, ast.Attribute) and owner.attr in ("c", "columns")


def raw_org_filters(source: str) -> list[str]:
    """``line: what`` for each organisation comparison written in ``source``."""
    tree = ast.parse(source)
    # Docstrings may quote the SQL they stand for; only code can filter.
    docstrings = {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
    }
    found: list[str] = []
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Compare):
            if any(_involves_column(side) for side in (node.left, *node.comparators)):
                found.append(f"{line}: compares {COLUMN}")
        elif isinstance(node, ast.Call):
            name = _name_of(node.func)
            if isinstance(node.func, ast.Attribute) and (
                (_is_column(node.func.value) and node.func.attr not in HARMLESS_METHODS)
                or (node.func.attr in COMPARING_METHODS and _involves_column(node.func.value))
            ):
                found.append(f"{line}: {COLUMN}.{node.func.attr}()")
            elif name in OPERATOR_FUNCTIONS and any(_involves_column(a) for a in node.args):
                found.append(f"{line}: {name}() over {COLUMN}")
            elif (
                name == "get"
                and node.args
                and isinstance(node.args[0], ast.Name)
                and node.args[0].id in ORG_KEYED
            ):
                found.append(f"{line}: get({node.args[0].id}, ...) by its {COLUMN} key")
            elif name == "filter_by" and (
                any(k.arg == COLUMN for k in node.keywords)
                or any(
                    isinstance(inner, ast.Constant) and inner.value == COLUMN
                    for inner in ast.walk(node)
                )
            ):
                found.append(f"{line}: filter_by({COLUMN}=...)")
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
            and SQL_COMPARISON.search(node.value)
        ):
            found.append(f"{line}: SQL text compares {COLUMN}")
        elif (
            isinstance(node, ast.Assign | ast.AnnAssign | ast.NamedExpr)
            and node.value is not None
            and _is_table_column(node.value)
        ):
            found.append(f"{line}: binds the {COLUMN} column to a name")
    return found


def _modules() -> list[Path]:
    return sorted(path for path in PACKAGE.rglob("*.py") if path != SCOPE)


def test_no_module_but_kit_scope_compares_the_organisation() -> None:
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{where}"
        for path in _modules()
        for where in raw_org_filters(path.read_text(encoding="utf-8"))
    ]
    assert found == [], "use maskline.kit.scope (scoped, owned_by) instead"


def test_the_scan_reads_every_package() -> None:
    """The scan sees the domains whose rows are scoped (a moved tree would go unread)."""
    read = {path.relative_to(PACKAGE).parts[0] for path in _modules()}
    assert {"billing", "calls", "numbers", "recordings", "stats", "webhooks", "kit"} <= read


def test_the_tables_keyed_by_the_organisation_are_known() -> None:
    """The lookup by primary key is caught for every such table (read from the models)."""
    keyed = [t for t in metadata.tables.values() if COLUMN in t.primary_key.columns]
    assert {"Wallet", "WebhookEndpoint"} <= ORG_KEYED
    assert len(ORG_KEYED) == len(keyed)


def test_kit_scope_is_where_the_comparison_is_written() -> None:
    """The scan recognises the helper's own comparisons: the form it exists for."""
    assert raw_org_filters(SCOPE.read_text(encoding="utf-8")) == [
        f"{_line_of(SCOPE, 'model.org_id == org_id')}: compares {COLUMN}",
        f"{_line_of(SCOPE, 'model.org_id.is_(None)')}: {COLUMN}.is_()",
    ]


def _line_of(path: Path, text: str) -> int:
    lines = path.read_text(encoding="utf-8").splitlines()
    return next(number for number, line in enumerate(lines, 1) if text in line)


RAW_FILTERS = {
    "equal": "select(Call).where(Call.org_id == org_id)",
    "equal, reversed": "select(Call).where(org_id == Call.org_id)",
    "not equal": "update(Wallet).where(Wallet.org_id != other).values(balance=0)",
    "delete": "delete(IdempotencyKey).where(IdempotencyKey.org_id == org_id)",
    "aggregate": "select(func.count()).select_from(Call).where(Call.org_id == org_id)",
    "join": "select(Call).join(Wallet, Wallet.org_id == Call.org_id)",
    "inside a function": "select(Call).where(func.lower(Call.org_id) == org_id)",
    "inside a tuple": "select(Call).where(tuple_(Call.org_id, Call.id).in_(pairs))",
    "alias column": "select(calls.c.org_id).where(calls.c.org_id == org_id)",
    "table column by name": 'select(Call).where(Call.__table__.c["org_id"] == org_id)',
    "getattr": 'select(Call).where(getattr(Call, "org_id") == org_id)',
    "literal column": 'select(Call).where(literal_column("org_id") == org_id)',
    "in_": "select(Call).where(Call.org_id.in_(orgs))",
    "is_": "select(MaskedNumber).where(MaskedNumber.org_id.is_(None))",
    "__eq__": "select(Call).where(Call.org_id.__eq__(org_id))",
    "op": 'select(Call).where(Call.org_id.op("=")(org_id))',
    "operator function": "select(Call).where(operators.eq(Call.org_id, org_id))",
    "filter_by": "select(Call).filter_by(org_id=org_id)",
    "filter_by, unpacked": 'select(Call).filter_by(**{"org_id": org_id})',
    "text": 'select(Call).where(text("org_id = :org"))',
    "text, quoted": "text('SELECT * FROM calls WHERE \"org_id\" IN (:orgs)')",
    "bound to a name": "column = Call.org_id",
    "bound to a name, annotated": "column: Any = Call.org_id",
    "python, on a loaded row": "if row.org_id != org_id:\n    raise NotFound()",
    "by primary key": "wallet = await session.get(Wallet, org_id)",
}


@pytest.mark.parametrize("source", RAW_FILTERS.values(), ids=RAW_FILTERS.keys())
def test_the_scan_finds_a_raw_filter(source: str) -> None:
    assert len(raw_org_filters(source)) == 1


NOT_FILTERS = """
session.add(Wallet(org_id=org_id, balance=0, reserved=0))
insert(CallDayPair).values([{"org_id": o, "day": d} for o, d in pairs])
insert_for(session, Counter).values(org_id=org_id).on_conflict_do_update(
    index_elements=[Counter.org_id], set_={"n": Counter.n + 1}
)
select(CallEvent.org_id).where(CallEvent.cursor.is_(None)).distinct().limit(50)
update(Recording).where(Recording.status == "pending").returning(Recording.org_id)
select(Call).order_by(Call.org_id.desc(), Call.id)
Index("ix_calls_org_created", "org_id", "created_at", "id")
endpoint = await lock_endpoint(session, row.org_id)
org_id = job.org_id
key = (call.org_id, ist_date(call.created_at))
text("SELECT pg_advisory_xact_lock(hashtext(:key))")
scoped(Call, org_id).where(Call.call_sid == call_sid)
update(Wallet).where(owned_by(Wallet, org_id), Wallet.reserved >= held)
select(MaskedNumber).where(owned_by_or_shared(MaskedNumber, org_id)).order_by(unowned(MaskedNumber))
"""


def test_the_scan_passes_reads_and_writes_of_the_column() -> None:
    assert raw_org_filters(NOT_FILTERS) == []
