"""OData query options as Microsoft Graph applies them to collections.

``parse_filter`` compiles a ``$filter`` expression into a predicate over plain JSON dicts;
``apply_query`` turns a list of dicts into the paged collection body Graph sends (``value``,
``@odata.nextLink`` with an opaque ``$skiptoken``, ``@odata.context``, ``@odata.count``).

Supported ``$filter`` grammar (anything else is a 400 ``BadRequest`` "Invalid filter clause"):
``eq ne gt ge lt le in``, ``and or not``, parentheses, ``startswith/endswith/contains(a,'x')``,
``tolower/toupper(a)``, lambdas ``tags/any(t:t eq 'x')`` / ``all``, navigation paths ``a/b/c``,
string literals with ``''`` escaping, typed enum literals ``microsoft.graph.x'value'``, bare
datetimes and dates, GUIDs, numbers, ``true``/``false``/``null``.

String comparisons ignore case by default: Graph's directory treats ``eq`` on names that way
(UNCONFIRMED, observed via Terraform's case-insensitive recheck); pass ``ignore_case=False`` for
strictly case-sensitive collections.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Mapping, Sequence
from urllib.parse import quote

from emulator.clock import parse_iso
from emulator.errors import GraphError

Predicate = Callable[[dict], bool]

_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<string>'(?:[^']|'')*')
  | (?P<guid>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}(?![\w-]))
  | (?P<datetime>\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2})?)?(?![\w-]))
  | (?P<number>-?\d+(?:\.\d+)?(?![\w-]))
  | (?P<typed>[A-Za-z_][\w.]*'(?:[^']|'')*')
  | (?P<ident>[A-Za-z_@$][\w.@$]*)
  | (?P<punct>[(),:/])
    """,
    re.VERBOSE,
)

_COMPARISONS = {"eq", "ne", "gt", "ge", "lt", "le"}
_BOOL_FUNCS = {"startswith", "endswith", "contains"}
_VALUE_FUNCS = {"tolower", "toupper", "trim"}


def invalid_filter(detail: str) -> GraphError:
    """The error Graph answers for a filter it cannot parse or does not support."""
    return GraphError(400, "BadRequest", f"Invalid filter clause: {detail}")


@dataclass
class _Token:
    kind: str
    text: str
    value: Any = None


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN_RE.match(text, pos)
        if not match:
            raise invalid_filter(f"syntax error at position {pos} in '{text}'.")
        kind = match.lastgroup or ""
        raw = match.group()
        pos = match.end()
        if kind == "ws":
            continue
        if kind == "string":
            tokens.append(_Token("literal", raw, raw[1:-1].replace("''", "'")))
        elif kind == "typed":
            quote_at = raw.index("'")
            tokens.append(_Token("literal", raw, raw[quote_at + 1 : -1].replace("''", "'")))
        elif kind == "guid":
            tokens.append(_Token("literal", raw, raw))
        elif kind == "datetime":
            try:
                tokens.append(_Token("literal", raw, parse_iso(raw)))
            except ValueError:
                raise invalid_filter(f"invalid datetime literal '{raw}'.") from None
        elif kind == "number":
            tokens.append(_Token("literal", raw, float(raw) if "." in raw else int(raw)))
        elif kind == "ident":
            lowered = raw.lower()
            if lowered in ("true", "false"):
                tokens.append(_Token("literal", raw, lowered == "true"))
            elif lowered == "null":
                tokens.append(_Token("literal", raw, None))
            else:
                tokens.append(_Token("ident", raw))
        else:
            tokens.append(_Token("punct", raw))
    return tokens


# How deeply a $filter may nest (parentheses, not, functions, lambdas). Graph's own limit is not
# documented; real filters use a handful of levels.
MAX_FILTER_DEPTH = 50


class _Parser:
    """Recursive-descent parser producing closures ``(item, scope) -> value``."""

    def __init__(self, text: str, ignore_case: bool) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.pos = 0
        self.ignore_case = ignore_case
        self.lambda_vars: list[str] = []
        self.depth = 0
        self.properties: set[str] = set()  # top-level property names the filter reads

    # -- token helpers -------------------------------------------------------------------------
    def peek(self, offset: int = 0) -> _Token | None:
        index = self.pos + offset
        return self.tokens[index] if index < len(self.tokens) else None

    def next(self) -> _Token:
        token = self.peek()
        if token is None:
            raise invalid_filter(f"unexpected end of expression '{self.text}'.")
        self.pos += 1
        return token

    def expect_punct(self, char: str) -> None:
        token = self.next()
        if token.kind != "punct" or token.text != char:
            raise invalid_filter(f"expected '{char}' but found '{token.text}'.")

    def at_punct(self, char: str) -> bool:
        token = self.peek()
        return token is not None and token.kind == "punct" and token.text == char

    def parse_parenthesised(self, parse: Callable[[], Any]) -> list:
        """``(x, y, ...)`` with each item read by ``parse``."""
        self.expect_punct("(")
        items = [parse()]
        while self.at_punct(","):
            self.next()
            items.append(parse())
        self.expect_punct(")")
        return items

    def at_keyword(self, word: str) -> bool:
        token = self.peek()
        return token is not None and token.kind == "ident" and token.text.lower() == word

    # -- grammar -------------------------------------------------------------------------------
    def parse(self) -> Callable[[dict, dict], Any]:
        node = self.parse_or()
        if self.peek() is not None:
            raise invalid_filter(f"unexpected '{self.tokens[self.pos].text}' in '{self.text}'.")
        return node

    def parse_or(self):
        # Every nested group, function argument, lambda body and "not" comes through here or
        # parse_not: bounding the depth keeps a hostile filter from ending in a RecursionError (500).
        self.depth += 1
        if self.depth > MAX_FILTER_DEPTH:
            raise invalid_filter(f"the expression is nested more than {MAX_FILTER_DEPTH} levels deep.")
        terms = [self.parse_and()]
        while self.at_keyword("or"):
            self.next()
            terms.append(self.parse_and())
        self.depth -= 1
        if len(terms) == 1:
            return terms[0]
        # A flat any() rather than nested closures: long "a or b or c ..." chains evaluate without deep recursion.
        return lambda item, scope: any(term(item, scope) is True for term in terms)

    def parse_and(self):
        terms = [self.parse_not()]
        while self.at_keyword("and"):
            self.next()
            terms.append(self.parse_not())
        if len(terms) == 1:
            return terms[0]
        return lambda item, scope: all(term(item, scope) is True for term in terms)

    def parse_not(self):
        if self.at_keyword("not"):
            self.next()
            self.depth += 1
            if self.depth > MAX_FILTER_DEPTH:
                raise invalid_filter(f"the expression is nested more than {MAX_FILTER_DEPTH} levels deep.")
            inner = self.parse_not()
            self.depth -= 1
            return lambda item, scope: inner(item, scope) is not True
        return self.parse_comparison()

    def parse_comparison(self):
        left = self.parse_operand()
        token = self.peek()
        if token is not None and token.kind == "ident" and token.text.lower() in _COMPARISONS:
            op = self.next().text.lower()
            right = self.parse_operand()
            return self._compare(op, left, right)
        if token is not None and token.kind == "ident" and token.text.lower() == "in":
            self.next()
            options = self.parse_parenthesised(self.parse_operand)
            compares = [self._compare("eq", left, option) for option in options]
            return lambda item, scope: any(c(item, scope) for c in compares)
        return left

    def parse_operand(self):
        token = self.next()
        if token.kind == "literal":
            value = token.value
            return lambda item, scope: value
        if token.kind == "punct" and token.text == "(":
            inner = self.parse_or()
            self.expect_punct(")")
            return inner
        if token.kind == "ident":
            name = token.text
            nxt = self.peek()
            if nxt is not None and nxt.kind == "punct" and nxt.text == "(" and "/" not in name:
                return self.parse_function(name)
            return self.parse_path(name)
        raise invalid_filter(f"unexpected '{token.text}' in '{self.text}'.")

    def parse_function(self, name: str):
        lowered = name.lower()
        if lowered not in _BOOL_FUNCS | _VALUE_FUNCS:
            raise invalid_filter(f"unsupported function '{name}'.")
        args = self.parse_parenthesised(self.parse_or)
        if lowered in _VALUE_FUNCS:
            if len(args) != 1:
                raise invalid_filter(f"function '{name}' takes one argument.")
            (arg,) = args
            transforms: dict[str, Callable[[str], str]] = {"tolower": str.lower, "toupper": str.upper, "trim": str.strip}
            transform = transforms[lowered]
            return lambda item, scope: transform(v) if isinstance(v := arg(item, scope), str) else v
        if len(args) != 2:
            raise invalid_filter(f"function '{name}' takes two arguments.")
        haystack, needle = args
        fold = self.ignore_case

        def string_test(item, scope):
            a, b = haystack(item, scope), needle(item, scope)
            if not isinstance(a, str) or not isinstance(b, str):
                return False
            if fold:
                a, b = a.lower(), b.lower()
            if lowered == "startswith":
                return a.startswith(b)
            if lowered == "endswith":
                return a.endswith(b)
            return b in a

        return string_test

    def parse_path(self, first: str):
        segments = first.split("/") if "/" in first else [first]
        while self.at_punct("/"):
            self.next()
            token = self.next()
            if token.kind != "ident":
                raise invalid_filter(f"unexpected '{token.text}' after '/'.")
            segments.append(token.text)
        if segments[-1].lower() in ("any", "all") and self.at_punct("("):
            return self.parse_lambda(segments[:-1], segments[-1].lower())
        if not all(segments):
            raise invalid_filter(f"invalid property path '{'/'.join(segments)}'.")
        return self._resolver(segments)

    def parse_lambda(self, collection_path: list[str], kind: str):
        collection = self._resolver(collection_path)
        self.expect_punct("(")
        var = self.next()
        if var.kind != "ident":
            raise invalid_filter("a lambda needs a range variable, e.g. tags/any(t:t eq 'x').")
        self.expect_punct(":")
        self.lambda_vars.append(var.text)
        body = self.parse_or()
        self.lambda_vars.pop()
        self.expect_punct(")")
        name = var.text

        def run(item, scope):
            values = collection(item, scope)
            if not isinstance(values, list):
                return False
            results = (body(item, {**scope, name: v}) is True for v in values)
            return any(results) if kind == "any" else all(results)

        return run

    def _resolver(self, segments: list[str]):
        head, rest = segments[0], segments[1:]
        is_var = head in self.lambda_vars
        if not is_var:
            self.properties.add(head)

        def resolve(item, scope):
            if is_var:
                value = scope.get(head)
            else:
                value = _get(item, head)
            for segment in rest:
                value = _get(value, segment)
            return value

        return resolve

    def _compare(self, op: str, left, right):
        fold = self.ignore_case

        def compare(item, scope):
            return _compare_values(op, left(item, scope), right(item, scope), fold)

        return compare


def _get(value: Any, key: str) -> Any:
    if not isinstance(value, dict):
        return None
    if key in value:
        return value[key]
    lowered = key.lower()
    for candidate, inner in value.items():
        if candidate.lower() == lowered:
            return inner
    return None


def _coerce_pair(a: Any, b: Any) -> tuple[Any, Any]:
    if isinstance(a, datetime) and isinstance(b, str):
        try:
            return a, parse_iso(b)
        except ValueError:
            return a, None
    if isinstance(b, datetime) and isinstance(a, str):
        try:
            return parse_iso(a), b
        except ValueError:
            return None, b
    return a, b


def _compare_values(op: str, a: Any, b: Any, fold: bool) -> bool:
    a, b = _coerce_pair(a, b)
    if fold and isinstance(a, str) and isinstance(b, str):
        a, b = a.lower(), b.lower()
    if op == "eq":
        return a == b
    if op == "ne":
        return a != b
    if a is None or b is None:
        return False
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    try:
        if op == "gt":
            return a > b
        if op == "ge":
            return a >= b
        if op == "lt":
            return a < b
        return a <= b
    except TypeError:
        return False


def parse_filter(text: str, ignore_case: bool = True) -> Predicate:
    """Compile a ``$filter`` expression to ``predicate(item) -> bool``.

    Raises ``GraphError(400, "BadRequest", "Invalid filter clause: ...")`` for anything outside
    the grammar in the module docstring, so a client never gets a silent "matches nothing".
    """
    if not text or not text.strip():
        raise invalid_filter("the expression is empty.")
    parser = _Parser(text, ignore_case)
    node = parser.parse()

    def predicate(item: dict) -> bool:
        return node(item, {}) is True

    predicate.properties = frozenset(parser.properties)  # type: ignore[attr-defined]
    return predicate


def check_properties(properties: frozenset[str] | set[str], known: frozenset[str], entity_type: str) -> None:
    """400 for a property the entity type does not have (Graph: "Could not find a property named ...").

    Names compare case-insensitively, as the emulator resolves them. A misspelt property is then
    an error, as in Graph, instead of a silent empty result.
    """
    lowered = {name.lower() for name in known}
    for name in sorted(properties):
        if name.lower() not in lowered:
            raise GraphError(400, "BadRequest", f"Could not find a property named '{name}' on type 'microsoft.graph.{entity_type}'.")


def check_filterable(properties: frozenset[str] | set[str], filterable: frozenset[str], entity_type: str) -> None:
    """400 for a property the collection does not support ``$filter`` on (names case-insensitive)."""
    lowered = {name.lower() for name in filterable}
    for name in sorted(properties):
        if name.lower() not in lowered:
            allowed = " and ".join(sorted(filterable))
            raise invalid_filter(f"filtering on property '{name}' of type 'microsoft.graph.{entity_type}' is not supported; "
                                 f"$filter supports {allowed}.")


# -- collection paging ------------------------------------------------------------------------

_KNOWN_OPTIONS = ("filter", "top", "skiptoken", "select", "orderby", "count", "skip", "expand", "search")


def normalize_query(query: Mapping[str, str]) -> dict[str, str]:
    """Map option names to ``$name`` (Graph accepts them without the ``$`` too, any case)."""
    result: dict[str, str] = {}
    for key, value in query.items():
        bare = key[1:] if key.startswith("$") else key
        if bare.lower() in _KNOWN_OPTIONS:
            result["$" + bare.lower()] = value
        else:
            result[key] = value
    return result


def encode_skiptoken(offset: int, bound: int | None = None) -> str:
    """Opaque token for the next page (clients must treat it as opaque; Graph's are too).

    ``bound`` (snapshot paging, see :func:`apply_query`) is how many items the collection had ever
    had when its first page was served.
    """
    data = {"o": offset} if bound is None else {"o": offset, "b": bound}
    raw = json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_token(token: str) -> tuple[int, int | None]:
    try:
        padded = token + "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        offset, bound = data["o"], data.get("b")
        for number in (offset, bound):
            if number is not None and (not isinstance(number, int) or isinstance(number, bool) or number < 0):
                raise ValueError
        return offset, bound
    except (ValueError, KeyError, TypeError, AttributeError):
        raise GraphError(400, "BadRequest", "The $skiptoken value is invalid.") from None


def decode_skiptoken(token: str) -> int:
    """The offset a token from :func:`encode_skiptoken` carries (400 for anything else)."""
    return _decode_token(token)[0]


def _parse_top(raw: str | None, default_top: int, max_top: int) -> int:
    if raw is None or raw == "":
        return default_top
    try:
        top = int(raw)
    except ValueError:
        raise GraphError(400, "BadRequest", f"Invalid value '{raw}' for $top; an integer is required.") from None
    if top < 1 or top > max_top:
        raise GraphError(
            400, "BadRequest", f"Invalid page size specified: '{top}'. Must be between 1 and {max_top} inclusive."
        )
    return top


def _sort_key(value: Any) -> tuple:
    if value is None:
        return (0, "")
    if isinstance(value, bool):
        return (1, value)
    if isinstance(value, (int, float)):
        return (2, value)
    if isinstance(value, str):
        return (3, value.lower())
    return (4, str(value))


def _apply_orderby(items: list[dict], text: str) -> list[dict]:
    clauses = [c.strip() for c in text.split(",") if c.strip()]
    if not clauses:
        raise GraphError(400, "BadRequest", "Invalid $orderby: empty expression.")
    ordered = list(items)
    for clause in reversed(clauses):
        parts = clause.split()
        if len(parts) > 2 or (len(parts) == 2 and parts[1].lower() not in ("asc", "desc")):
            raise GraphError(400, "BadRequest", f"Invalid $orderby clause '{clause}'.")
        path = parts[0].split("/")
        descending = len(parts) == 2 and parts[1].lower() == "desc"

        def key(item: dict, path=path) -> tuple:
            value = item
            for segment in path:
                value = _get(value, segment)
            return _sort_key(value)

        ordered.sort(key=key, reverse=descending)
    return ordered


_SEARCH_CLAUSE = re.compile(r'^"(\w+):([^"]*)"$')


def _search_matches(item: dict, text: str) -> bool:
    """Directory ``$search="property:term"`` (clauses joined with AND): case-insensitive word prefix."""
    for clause in re.split(r"\s+AND\s+", text.strip()):
        match = _SEARCH_CLAUSE.match(clause.strip())
        if not match:
            raise GraphError(400, "Request_UnsupportedQuery", f"Invalid $search clause {clause!r}; use \"property:term\".")
        value = _get(item, match.group(1))
        term = match.group(2).lower()
        if not isinstance(value, str) or not any(word.startswith(term) for word in [value.lower(), *re.split(r"[\s._@-]+", value.lower())]):
            return False
    return True


def select_fields(item: dict, select: str) -> dict:
    """Project ``item`` onto the ``$select`` list (case-insensitive names; annotations kept)."""
    wanted = [name.strip() for name in select.split(",") if name.strip()]
    projected = {k: v for k, v in item.items() if k.startswith("@odata")}
    for name in wanted:
        for key, value in item.items():
            if key.lower() == name.lower():
                projected[key] = value
                break
    return projected


def apply_query(
    items: Sequence[dict],
    query: Mapping[str, str],
    base_url: str,
    max_top: int = 999,
    default_top: int = 100,
    context: str | None = None,
    ignore_case: bool = True,
    allow_search: bool = False,
    entity: tuple[str, frozenset[str]] | None = None,
    snapshot: int | None = None,
    filterable: frozenset[str] | None = None,
) -> dict:
    """Filter, order, page and project ``items`` per the request's query options.

    ``base_url`` is the absolute collection URL (no query); the next page link repeats the
    request's options with a ``$skiptoken`` appended, as Graph's ``@odata.nextLink`` does.
    ``entity`` = (type name, its property names) turns on the unknown-property check of ``$filter``;
    ``filterable`` (with ``entity``) names the only properties ``$filter`` may read.

    ``snapshot`` is for collections that grow at the front while a client pages (the provisioning
    logs, newest first): the number of items ever added. The first page's count travels in the
    ``$skiptoken``, and later pages leave out the items added since, so following
    ``@odata.nextLink`` never returns a row twice nor skips one (the pages are one snapshot).
    """
    options = normalize_query(query)
    selected = list(items)
    offset, bound = _decode_token(options["$skiptoken"]) if options.get("$skiptoken") else (0, None)
    if snapshot is not None:
        bound = snapshot if bound is None else bound
        selected = selected[max(0, snapshot - bound):]
    if "$search" in options:
        if not allow_search:
            raise GraphError(400, "Request_UnsupportedQuery", "$search is not supported on this collection.")
        selected = [item for item in selected if _search_matches(item, options["$search"])]
    if "$filter" in options:
        predicate = parse_filter(options["$filter"], ignore_case=ignore_case)
        if entity is not None:
            check_properties(predicate.properties, entity[1], entity[0])  # type: ignore[attr-defined]
            if filterable is not None:
                check_filterable(predicate.properties, filterable, entity[0])  # type: ignore[attr-defined]
        selected = [item for item in selected if predicate(item)]
    if "$orderby" in options:
        selected = _apply_orderby(selected, options["$orderby"])
    total = len(selected)
    top = _parse_top(options.get("$top"), default_top, max_top)
    if options.get("$skip"):
        try:
            offset += max(0, int(options["$skip"]))
        except ValueError:
            raise GraphError(400, "BadRequest", f"Invalid value '{options['$skip']}' for $skip.") from None
    page = selected[offset : offset + top]
    if options.get("$select"):
        page = [select_fields(item, options["$select"]) for item in page]
    body: dict[str, Any] = {}
    if context:
        body["@odata.context"] = context
    if str(options.get("$count", "")).lower() == "true":
        body["@odata.count"] = total
    if offset + top < total:
        carry = {k: v for k, v in options.items() if k not in ("$skiptoken", "$skip")}
        carry["$skiptoken"] = encode_skiptoken(offset + top, bound if snapshot is not None else None)
        encoded = "&".join(f"{quote(k, safe='$')}={quote(str(v), safe='')}" for k, v in carry.items())
        body["@odata.nextLink"] = f"{base_url}?{encoded}"
    body["value"] = page
    return body
