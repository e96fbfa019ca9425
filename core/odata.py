"""Build OData ``$filter`` expressions safely.

Why: display names come from users ("O'Brien's app"); pasted into a filter unescaped they break the
query or change its meaning (OData filter injection). Every filter in the core is built here:
string literals double their single quotes (OData ABNF ``SQUOTE-in-string``; Graph's "Escaping
single quotes" in https://learn.microsoft.com/graph/query-parameters shows the same rule) and
control characters are refused. ``requests`` then percent-encodes the whole query value.
"""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_PROPERTY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*$")


def literal(value: str) -> str:
    """An OData string literal: ``O'Brien`` -> ``'O''Brien'``. Control characters are refused."""
    if not isinstance(value, str):
        raise TypeError("OData string literal must be a str")
    if _CONTROL.search(value):
        raise ValueError("control characters are not allowed in a filter value")
    return "'" + value.replace("'", "''") + "'"


def _prop(name: str) -> str:
    if not _PROPERTY.match(name):
        raise ValueError(f"not a property path: {name!r}")
    return name


def eq(prop: str, value: str) -> str:
    """``prop eq 'value'``."""
    return f"{_prop(prop)} eq {literal(value)}"


def any_eq(collection: str, value: str) -> str:
    """``collection/any(t:t eq 'value')``, e.g. a tag lookup."""
    return f"{_prop(collection)}/any(t:t eq {literal(value)})"


def gt(prop: str, raw: str) -> str:
    """``prop gt raw`` for non-string values (timestamps); ``raw`` must be a plain token."""
    if not re.match(r"^[0-9A-Za-z:.+\-]+$", raw):
        raise ValueError(f"not a plain OData value: {raw!r}")
    return f"{_prop(prop)} gt {raw}"


def and_(*clauses: str) -> str:
    """Join clauses with ``and`` (empty clauses are skipped)."""
    return " and ".join(c for c in clauses if c)


def group(clause: str) -> str:
    """``(clause)``: bracket an ``and`` clause before it is joined with :func:`or_`."""
    return f"({clause})"


def or_(*clauses: str) -> str:
    """Join clauses with ``or`` (empty ones skipped); ``and`` binds tighter, so :func:`group` compound clauses."""
    return " or ".join(c for c in clauses if c)
