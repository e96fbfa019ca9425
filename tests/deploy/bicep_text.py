"""Just enough Bicep reading for structural checks (no Bicep compiler is available offline).

It understands comments, '...' strings with \\' escapes and ${...} interpolation, and bracket
nesting; from that it finds params, outputs, modules, a module's ``params: {...}`` keys and the
keys of an object literal. It is not a parser: the checks it supports are about structure (names,
references, literal property values), which is what can go wrong without a compiler.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

OPENERS = {"{": "}", "[": "]", "(": ")"}
CLOSERS = {v: k for k, v in OPENERS.items()}


def strip_comments(text: str) -> str:
    """Blank out // and /* */ comments (keeping offsets and newlines); strings are left alone."""
    out = list(text)
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "'":
            i = _skip_string(text, i)
            continue
        if text.startswith("//", i):
            end = text.find("\n", i)
            end = n if end == -1 else end
            out[i:end] = " " * (end - i)
            i = end
            continue
        if text.startswith("/*", i):
            end = text.find("*/", i + 2)
            end = n if end == -1 else end + 2
            out[i:end] = [ch if ch == "\n" else " " for ch in text[i:end]]
            i = end
            continue
        i += 1
    return "".join(out)


def _skip_string(text: str, i: int) -> int:
    """Index just after the string literal starting at ``text[i] == "'"``."""
    if text.startswith("'''", i):  # multi-line string, no escapes
        end = text.find("'''", i + 3)
        return len(text) if end == -1 else end + 3
    i += 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text.startswith("${", i):
            i = matching_close(text, i + 1) + 1
            continue
        if text[i] == "'":
            return i + 1
        i += 1
    raise ValueError("unterminated string")


def matching_close(text: str, open_index: int) -> int:
    """Index of the bracket closing the one at ``open_index`` (strings skipped)."""
    stack = [text[open_index]]
    i = open_index + 1
    while i < len(text):
        c = text[i]
        if c == "'":
            i = _skip_string(text, i)
            continue
        if c in OPENERS:
            stack.append(c)
        elif c in CLOSERS:
            if stack[-1] != CLOSERS[c]:
                raise ValueError(f"mismatched {c!r} at offset {i}")
            stack.pop()
            if not stack:
                return i
        i += 1
    raise ValueError(f"unclosed {text[open_index]!r} at offset {open_index}")


def check_balanced(text: str) -> None:
    """Raise ValueError unless every bracket and string in ``text`` (comments stripped) closes."""
    i = 0
    while i < len(text):
        c = text[i]
        if c == "'":
            i = _skip_string(text, i)
            continue
        if c in OPENERS:
            i = matching_close(text, i) + 1
            continue
        if c in CLOSERS:
            raise ValueError(f"unexpected {c!r} at offset {i}")
        i += 1


def top_level_keys(block: str) -> list[str]:
    """Keys of the object literal whose body (without the outer braces) is ``block``."""
    keys: list[str] = []
    depth = 0
    i = 0
    at_line_start = True
    while i < len(block):
        c = block[i]
        if c == "'" and not (depth == 0 and at_line_start):
            i = _skip_string(block, i)
            at_line_start = False
            continue
        if c in OPENERS:
            depth += 1
        elif c in CLOSERS:
            depth -= 1
        elif c == "\n":
            at_line_start = True
            i += 1
            continue
        if depth == 0 and at_line_start and not c.isspace():
            match = re.match(r"('(?:[^'\\]|\\.)*'|[A-Za-z_][\w]*)\s*:", block[i:])
            if match:
                keys.append(match.group(1).strip("'"))
                i += match.end()
                at_line_start = False
                continue
            at_line_start = False
        i += 1
    return keys


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    has_default: bool


@dataclass(frozen=True)
class Module:
    symbol: str
    path: str
    params: tuple[str, ...]


class BicepFile:
    """One .bicep file, comments stripped."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.raw = path.read_text(encoding="utf-8")
        self.text = strip_comments(self.raw)

    def params(self) -> list[Param]:
        pattern = re.compile(r"^param\s+(\w+)\s+(\w+)(\s*=)?", re.MULTILINE)
        return [Param(m.group(1), m.group(2), bool(m.group(3))) for m in pattern.finditer(self.text)]

    def outputs(self) -> list[str]:
        return re.findall(r"^output\s+(\w+)\s+\w+", self.text, re.MULTILINE)

    def modules(self) -> list[Module]:
        result = []
        for m in re.finditer(r"^module\s+(\w+)\s+'([^']+)'\s*=", self.text, re.MULTILINE):
            body_start = self.text.index("{", m.end())
            body = self.text[body_start + 1 : matching_close(self.text, body_start)]
            params_match = re.search(r"^\s*params\s*:\s*\{", body, re.MULTILINE)
            keys: list[str] = []
            if params_match:
                open_index = params_match.end() - 1
                keys = top_level_keys(body[open_index + 1 : matching_close(body, open_index)])
            result.append(Module(m.group(1), m.group(2), tuple(keys)))
        return result

    def object_after(self, declaration: str) -> str:
        """Body of the first ``{...}`` after the regex ``declaration`` (e.g. ``var hostSettings =``)."""
        m = re.search(declaration, self.text, re.MULTILINE)
        if not m:
            raise KeyError(declaration)
        open_index = self.text.index("{", m.end())
        return self.text[open_index + 1 : matching_close(self.text, open_index)]

    def identifier_used(self, name: str, after_declaration: bool = True) -> bool:
        """Whether ``name`` appears as an identifier other than in its own declaration line."""
        uses = [m for m in re.finditer(rf"(?<![\w.']){re.escape(name)}(?![\w'])", self.text)]
        declarations = [m for m in re.finditer(rf"^(param|var|output)\s+{re.escape(name)}\b", self.text, re.MULTILINE)]
        return len(uses) > len(declarations)
