"""A tiny JSON Schema (2020-12 subset) checker, enough for schemas/provisioning-request.schema.json.

Why not the ``jsonschema`` package: it is not a dependency, and the schema only uses a handful of
keywords. Patterns follow ECMA-262 semantics for ``$`` (end of input, not before a final newline).
"""

from __future__ import annotations

import re
from typing import Any

_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}


def _type_ok(value: Any, name: str) -> bool:
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, _TYPES[name]) and not (name != "boolean" and isinstance(value, bool))


def _pattern(pattern: str, value: str) -> bool:
    if pattern.endswith("$"):
        pattern = pattern[:-1] + r"\Z"
    return re.search(pattern, value) is not None


def errors(value: Any, schema: dict, root: dict | None = None, path: str = "$") -> list[str]:
    root = root or schema
    if "$ref" in schema:
        target = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            target = target[part]
        return errors(value, target, root, path)
    found: list[str] = []
    if "type" in schema:
        names = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_type_ok(value, n) for n in names):
            return [f"{path}: not {schema['type']}"]
    if "oneOf" in schema:
        matches = sum(1 for sub in schema["oneOf"] if not errors(value, sub, root, path))
        if matches != 1:
            found.append(f"{path}: matches {matches} of oneOf")
    if "const" in schema and not (value == schema["const"] and type(value) is type(schema["const"])):
        found.append(f"{path}: not {schema['const']!r}")
    if "not" in schema and not errors(value, schema["not"], root, path):
        found.append(f"{path}: matches 'not'")
    if "if" in schema and not errors(value, schema["if"], root, path) and "then" in schema:
        found += errors(value, schema["then"], root, path)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            found.append(f"{path}: below minimum")
        if "maximum" in schema and value > schema["maximum"]:
            found.append(f"{path}: above maximum")
    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            found.append(f"{path}: too short")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            found.append(f"{path}: too long")
        if "pattern" in schema and not _pattern(schema["pattern"], value):
            found.append(f"{path}: pattern")
    if isinstance(value, list):
        if "minItems" in schema and len(value) < schema["minItems"]:
            found.append(f"{path}: too few items")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            found.append(f"{path}: too many items")
        if "items" in schema:
            for i, item in enumerate(value):
                found += errors(item, schema["items"], root, f"{path}[{i}]")
    if isinstance(value, dict):
        for name in schema.get("required", []):
            if name not in value:
                found.append(f"{path}.{name}: required")
        if "minProperties" in schema and len(value) < schema["minProperties"]:
            found.append(f"{path}: too few properties")
        if "maxProperties" in schema and len(value) > schema["maxProperties"]:
            found.append(f"{path}: too many properties")
        props = schema.get("properties", {})
        for name, item in value.items():
            if "propertyNames" in schema:
                found += errors(name, schema["propertyNames"], root, f"{path}.{name}(name)")
            if name in props:
                found += errors(item, props[name], root, f"{path}.{name}")
            elif schema.get("additionalProperties") is False:
                found.append(f"{path}.{name}: unknown")
            elif isinstance(schema.get("additionalProperties"), dict):
                found += errors(item, schema["additionalProperties"], root, f"{path}.{name}")
    return found
