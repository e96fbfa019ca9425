"""Attribute-mapping expressions and scoping filters: the emulator's small, documented subset.

Syntax (Microsoft's "Reference for writing expressions for attribute mappings",
https://learn.microsoft.com/entra/identity/app-provisioning/functions-for-customizing-application-data):
an expression is an attribute in brackets (``[userPrincipalName]``), a string constant in double
quotes (``"@contoso.com"``, a ``\\"`` inside is a quote), a number, or a function call ``Name(arg, ...)``
whose arguments are expressions; an argument may be left empty (``Switch([IsSoftDeleted], , ...)``
as in the gallery schemas). Function names are case-insensitive.

Functions the emulator evaluates (anything else is a parse error, as the real ``parseExpression``
answers for an unknown function): ``Append(source, suffix)``, ``Coalesce(a, b, ...)``,
``IIF(condition, valueIfTrue, valueIfFalse)``, ``IsPresent(source)``, ``Join(separator, a, b, ...)``,
``Left(source, count)``, ``Not(source)``, ``Switch(source, defaultValue, key1, value1, ...)``,
``ToLower(source[, culture])``, ``ToUpper(source[, culture])``, ``Trim(source)``
(``Trim`` is the emulator's; the others follow the reference's signatures).

Scoping filters (``objectMapping.scope``, the ``filter`` resource,
https://learn.microsoft.com/graph/api/resources/synchronization-filter): the object is in scope when
ANY ``groups[]`` entry holds and a group holds when ALL its ``clauses`` hold; operators as listed by
"Scoping users or groups to be provisioned with scoping filters"
(https://learn.microsoft.com/entra/identity/app-provisioning/define-conditional-rules-for-provisioning-user-accounts).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

#: attributes the provisioning service adds to every source object (used by the gallery schemas)
PSEUDO_ATTRIBUTES = frozenset({"IsSoftDeleted"})

#: function -> (parameter names for attributeMappingSource.parameters, min args, max args or None)
FUNCTIONS: dict[str, tuple[tuple[str, ...], int, int | None]] = {
    "Append": (("source", "suffix"), 2, 2),
    "Coalesce": (("source",), 1, None),
    "IIF": (("condition", "valueIfTrue", "valueIfFalse"), 3, 3),
    "IsPresent": (("source",), 1, 1),
    "Join": (("separator", "source"), 2, None),
    "Left": (("source", "numChars"), 2, 2),
    "Not": (("source",), 1, 1),
    "Switch": (("source", "defaultValue", "key", "value"), 2, None),
    "ToLower": (("source", "culture"), 1, 2),
    "ToUpper": (("source", "culture"), 1, 2),
    "Trim": (("source",), 1, 1),
}
_CANONICAL = {name.lower(): name for name in FUNCTIONS}

#: scoping-filter operators (upper case, as the portal and filterOperators name them)
OPERATORS = frozenset({
    "EQUALS", "NOT EQUALS", "IS TRUE", "IS FALSE", "IS NULL", "IS NOT NULL", "REGEX MATCH", "NOT REGEX MATCH",
    "INCLUDES", "EXCLUDES", "GREATER_THAN", "GREATER_THAN_OR_EQUALS",
})


class ExpressionError(ValueError):
    """An expression that does not parse (message says where and why)."""


@dataclass
class Node:
    type: str  # Attribute | Constant | Function | Empty
    value: str = ""
    args: list["Node"] = field(default_factory=list)
    text: str = ""


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, why: str) -> ExpressionError:
        return ExpressionError(f"{why} at position {self.pos} of '{self.text}'")

    def skip(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def peek(self) -> str:
        self.skip()
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def parse(self) -> Node:
        node = self.node(allow_empty=False)
        if self.peek():
            raise self.fail(f"unexpected '{self.peek()}'")
        return node

    def node(self, allow_empty: bool) -> Node:
        start = self.pos
        ch = self.peek()
        if ch == "[":
            end = self.text.find("]", self.pos)
            if end < 0:
                raise self.fail("missing ']'")
            name = self.text[self.pos + 1:end].strip()
            if not name:
                raise self.fail("empty attribute name")
            self.pos = end + 1
            return Node("Attribute", name, text=self.text[start:self.pos].strip())
        if ch == '"':
            self.pos += 1
            out = []
            while True:
                if self.pos >= len(self.text):
                    raise self.fail("unterminated string constant")
                c = self.text[self.pos]
                if c == "\\" and self.pos + 1 < len(self.text):
                    out.append(self.text[self.pos + 1])
                    self.pos += 2
                    continue
                self.pos += 1
                if c == '"':
                    break
                out.append(c)
            return Node("Constant", "".join(out), text=self.text[start:self.pos].strip())
        number = re.compile(r"-?[0-9]+").match(self.text, self.pos)
        if number:  # a number argument (Left's numChars)
            self.pos = number.end()
            return Node("Constant", number.group(0), text=number.group(0))
        match = re.compile(r"[A-Za-z][A-Za-z0-9]*").match(self.text, self.pos)
        if match:
            name = match.group(0)
            self.pos = match.end()
            if self.peek() != "(":
                raise self.fail(f"'{name}' must be a function call Name(...), an attribute [name] or a \"constant\"")
            canonical = _CANONICAL.get(name.lower())
            if canonical is None:
                raise self.fail(f"unknown function '{name}'")
            self.pos += 1
            args: list[Node] = []
            if self.peek() == ")":
                self.pos += 1
            else:
                while True:
                    args.append(self.node(allow_empty=True))
                    ch = self.peek()
                    if ch == ",":
                        self.pos += 1
                        continue
                    if ch == ")":
                        self.pos += 1
                        break
                    raise self.fail("expected ',' or ')'")
            _, low, high = FUNCTIONS[canonical]
            if len(args) < low or (high is not None and len(args) > high):
                raise self.fail(f"{canonical} takes {low}{'' if high == low else (' or more' if high is None else f' to {high}')} arguments, not {len(args)}")
            return Node("Function", canonical, args, text=self.text[start:self.pos].strip())
        if allow_empty and ch in (",", ")"):
            return Node("Empty")
        raise self.fail("expected an attribute [name], a \"constant\" or a function call" if ch else "unexpected end")


def parse(text: str) -> Node:
    """Parse an expression (ExpressionError when it does not parse)."""
    if not isinstance(text, str) or not text.strip():
        raise ExpressionError("the expression is empty")
    return _Parser(text).parse()


def attributes(node: Node) -> list[str]:
    """The source attributes an expression reads, in order."""
    if node.type == "Attribute":
        return [node.value]
    found: list[str] = []
    for arg in node.args:
        found += [a for a in attributes(arg) if a not in found]
    return found


def to_source(node: Node) -> dict:
    """The attributeMappingSource Graph's parseExpression returns as ``parsedExpression``
    (https://learn.microsoft.com/graph/api/resources/synchronization-attributemappingsource)."""
    if node.type == "Attribute":
        return {"expression": node.text, "name": node.value, "parameters": [], "type": "Attribute"}
    if node.type in ("Constant", "Empty"):
        return {"expression": node.text, "name": node.value, "parameters": [], "type": "Constant"}
    names = FUNCTIONS[node.value][0]
    params = [{"key": names[min(i, len(names) - 1)], "value": to_source(arg)} for i, arg in enumerate(node.args)]
    return {"expression": node.text, "name": node.value, "parameters": params, "type": "Function"}


def _truthy(value: str | None) -> bool:
    return str(value or "").strip().lower() == "true"


def evaluate(node: Node, source: dict[str, str | None]) -> str | None:
    """The value an expression gives for one source object (None: nothing to export)."""
    if node.type == "Attribute":
        value = source.get(node.value)
        return None if value is None or value == "" else str(value)
    if node.type == "Constant":
        return node.value
    if node.type == "Empty":
        return None
    args = node.args
    name = node.value

    def arg(i: int) -> str | None:
        return evaluate(args[i], source) if i < len(args) else None

    if name == "Append":
        return None if arg(0) is None else (arg(0) or "") + (arg(1) or "")
    if name == "Coalesce":
        return next((v for v in (evaluate(a, source) for a in args) if v not in (None, "")), None)
    if name == "IIF":
        return arg(1) if _truthy(arg(0)) else arg(2)
    if name == "IsPresent":
        return "True" if arg(0) not in (None, "") else "False"
    if name == "Join":
        parts = [evaluate(a, source) for a in args[1:]]
        return (arg(0) or "").join(p for p in parts if p not in (None, ""))
    if name == "Left":
        value = arg(0)
        try:
            count = int(arg(1) or "0")
        except ValueError:
            return value
        return None if value is None else value[:max(count, 0)]
    if name == "Not":
        return "False" if _truthy(arg(0)) else "True"
    if name == "Switch":
        value = arg(0) or ""
        for i in range(2, len(args) - 1, 2):
            if (evaluate(args[i], source) or "") == value:
                return evaluate(args[i + 1], source)
        return arg(1)
    if name == "ToLower":
        return None if arg(0) is None else (arg(0) or "").lower()
    if name == "ToUpper":
        return None if arg(0) is None else (arg(0) or "").upper()
    if name == "Trim":
        return None if arg(0) is None else (arg(0) or "").strip()
    raise ExpressionError(f"unknown function '{name}'")  # pragma: no cover - the parser refuses it


# ----- scoping filters --------------------------------------------------------------------

def clause_holds(clause: dict, source: dict[str, str | None]) -> bool:
    operator = str(clause.get("operatorName") or "").upper()
    value = source.get(str(clause.get("sourceOperandName") or ""))
    values = [str(v) for v in ((clause.get("targetOperand") or {}).get("values") or [])]
    text = "" if value is None else str(value)
    if operator == "EQUALS":
        return any(text.lower() == v.lower() for v in values)
    if operator == "NOT EQUALS":
        return all(text.lower() != v.lower() for v in values)
    if operator == "IS TRUE":
        return _truthy(text)
    if operator == "IS FALSE":
        return not _truthy(text)
    if operator == "IS NULL":
        return not text
    if operator == "IS NOT NULL":
        return bool(text)
    if operator == "REGEX MATCH":
        return any(re.search(v, text) for v in values)
    if operator == "NOT REGEX MATCH":
        return not any(re.search(v, text) for v in values)
    if operator == "INCLUDES":
        return any(text.lower() == v.lower() for v in values)
    if operator == "EXCLUDES":
        return all(text.lower() != v.lower() for v in values)
    try:
        number, bound = float(text), float(values[0]) if values else 0.0
    except ValueError:
        return False
    return number > bound if operator == "GREATER_THAN" else number >= bound


def failed_scope(scope: object, source: dict[str, str | None]) -> str | None:
    """None when the object passes ``scope`` (or there is none), else a description of the filter it failed."""
    groups = (scope or {}).get("groups") if isinstance(scope, dict) else None
    if not groups:
        return None
    for group in groups:
        if all(clause_holds(c, source) for c in group.get("clauses") or []):
            return None
    return ", ".join(str(g.get("name") or "filter group") for g in groups)


def check_scope(scope: object, where: str, known: set[str]) -> str | None:
    """A problem with a scoping filter (None: usable): unknown operator or source attribute."""
    if scope is None:
        return None
    if not isinstance(scope, dict):
        return f"{where}.scope must be a filter object"
    for g, group in enumerate(scope.get("groups") or []):
        if not isinstance(group, dict) or not isinstance(group.get("clauses") or [], list):
            return f"{where}.scope.groups[{g}] must be a filterGroup with clauses"
        for c, clause in enumerate(group.get("clauses") or []):
            at = f"{where}.scope.groups[{g}].clauses[{c}]"
            if not isinstance(clause, dict):
                return f"{at} must be a filterClause"
            if str(clause.get("operatorName") or "").upper() not in OPERATORS:
                return f"{at}: unknown operator '{clause.get('operatorName')}'"
            if clause.get("sourceOperandName") not in known:
                return f"{at}: '{clause.get('sourceOperandName')}' is not an attribute of the source object"
    return None
