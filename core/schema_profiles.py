"""Schema profiles: named, versioned changes over a synchronization template's default schema.

A profile (``profiles/<name>.v<version>.json``, JSON Schema ``schemas/schema-profile.schema.json``,
guide ``docs/configuration-as-code.md``) says, per object mapping (keyed by ``sourceObjectName``):
``enabled``, ``scope`` (Graph's scoping ``filter``; null removes it) and ``attributeMappings``
(``targetAttributeName`` -> ``{expression, matchingPriority?, flowType?, defaultValue?}`` to add or
change, or null to remove). The desired schema of an instance is its job template's default schema
(``GET .../templates/{id}/schema``) with the profile applied; applying PUTs that whole schema (a
schema PUT replaces it whole: https://learn.microsoft.com/graph/api/synchronization-synchronizationschema-update).

Pure functions (no I/O but reading the profile files): load, check the shape, check against a
template's schema (unknown object mappings, target and source attributes, scoping operands; the
expressions' syntax is Graph's ``parseExpression``, called by ``core.steps.profiles``), apply,
diff at mapping level, fingerprint. Errors are :class:`core.errors.Problem` rows whose path names
the mapping (``objectMappings.User.attributeMappings.userName``).
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from pathlib import Path
from typing import Any

from core.errors import InvalidRequest, Problem

PROFILES_DIR = Path(__file__).resolve().parent.parent / "profiles"
#: ``<name>.v<version>`` as requests and tags name a profile
PROFILE_REF = re.compile(r"^(?P<name>[a-z0-9][a-z0-9-]{0,62})\.v(?P<version>[0-9]{1,6})$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_FLOW_TYPES = ("Always", "ObjectAddOnly", "MultiValueAddOnly", "ValueAddOnly", "AttributeAddOnly")
#: attributes the provisioning service adds to every source object (used by the gallery schemas)
PSEUDO_ATTRIBUTES = frozenset({"IsSoftDeleted"})
_ATTRIBUTE_REF = re.compile(r"\[([^\]]+)\]")


def ref(profile: dict) -> str:
    """``<name>.v<version>`` of a loaded profile."""
    return f"{profile['name']}.v{profile['version']}"


def parse_ref(text: Any, path: str = "schemaProfile") -> tuple[str, int]:
    """(name, version) of a ``<name>.v<version>`` reference; InvalidRequest naming ``path`` otherwise."""
    match = PROFILE_REF.match(text) if isinstance(text, str) else None
    if match is None:
        raise InvalidRequest([Problem(path, "must name a profile as <name>.v<version>, e.g. aws-identity-center.v1")])
    return match.group("name"), int(match.group("version"))


def load(text: Any, directory: Path | None = None, path: str = "schemaProfile") -> dict:
    """Read and shape-check the profile ``<name>.v<version>`` from ``profiles/``."""
    name, version = parse_ref(text, path)
    source = (directory or PROFILES_DIR) / f"{name}.v{version}.json"
    if not source.is_file():
        known = ", ".join(sorted(p.stem for p in (directory or PROFILES_DIR).glob("*.json"))) or "none"
        raise InvalidRequest([Problem(path, f"no profile {name}.v{version} (known: {known})")])
    try:
        profile = json.loads(source.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise InvalidRequest([Problem(path, f"{source.name} is not JSON: {exc}")]) from None
    problems = shape_problems(profile)
    if not problems and (profile["name"], profile["version"]) != (name, version):
        problems.append(Problem("name", f"{source.name} says {profile['name']}.v{profile['version']}"))
    if problems:
        raise InvalidRequest(problems)
    return profile


def shape_problems(profile: Any) -> list[Problem]:
    """Every field that breaks ``schemas/schema-profile.schema.json`` (the same rules, field-level)."""
    if not isinstance(profile, dict):
        return [Problem("$", "a profile is a JSON object")]
    found: list[Problem] = []
    for key in profile:
        if key not in ("$schema", "name", "version", "description", "synchronizationTemplateId", "objectMappings"):
            found.append(Problem(key, "unknown field"))
    if not isinstance(profile.get("name"), str) or not _NAME.match(profile["name"]):
        found.append(Problem("name", "required: lower-case letters, digits and '-'"))
    if not isinstance(profile.get("version"), int) or isinstance(profile.get("version"), bool):
        found.append(Problem("version", "required: an integer"))
    if not isinstance(profile.get("synchronizationTemplateId"), str) or not profile["synchronizationTemplateId"]:
        found.append(Problem("synchronizationTemplateId", "required: the synchronization template id (e.g. scim)"))
    mappings = profile.get("objectMappings")
    if not isinstance(mappings, dict) or not mappings:
        found.append(Problem("objectMappings", "required: {sourceObjectName: changes}"))
        return found
    for source, changes in mappings.items():
        at = f"objectMappings.{source}"
        if not isinstance(changes, dict):
            found.append(Problem(at, "must be an object"))
            continue
        for key in changes:
            if key not in ("enabled", "scope", "attributeMappings"):
                found.append(Problem(f"{at}.{key}", "unknown field (enabled, scope, attributeMappings)"))
        if "enabled" in changes and not isinstance(changes["enabled"], bool):
            found.append(Problem(f"{at}.enabled", "must be true or false"))
        if "scope" in changes and changes["scope"] is not None:
            found += _filter_problems(changes["scope"], f"{at}.scope")
        attrs = changes.get("attributeMappings", {})
        if not isinstance(attrs, dict):
            found.append(Problem(f"{at}.attributeMappings", "must be {targetAttributeName: mapping or null}"))
            continue
        for target, spec in attrs.items():
            where = f"{at}.attributeMappings.{target}"
            if spec is None:
                continue
            if not isinstance(spec, dict):
                found.append(Problem(where, "must be {expression, matchingPriority?, flowType?, defaultValue?} or null"))
                continue
            for key in spec:
                if key not in ("expression", "matchingPriority", "flowType", "defaultValue"):
                    found.append(Problem(f"{where}.{key}", "unknown field"))
            if not isinstance(spec.get("expression"), str) or not spec["expression"].strip():
                found.append(Problem(f"{where}.expression", "required: a mapping expression, e.g. [userPrincipalName]"))
            if "matchingPriority" in spec and (not isinstance(spec["matchingPriority"], int)
                                               or isinstance(spec["matchingPriority"], bool)):
                found.append(Problem(f"{where}.matchingPriority", "must be an integer (0: not a matching attribute)"))
            if "flowType" in spec and spec["flowType"] not in _FLOW_TYPES:
                found.append(Problem(f"{where}.flowType", f"must be one of {', '.join(_FLOW_TYPES)}"))
            if "defaultValue" in spec and not isinstance(spec["defaultValue"], (str, type(None))):
                found.append(Problem(f"{where}.defaultValue", "must be a string or null"))
    return found


def _filter_problems(scope: Any, at: str) -> list[Problem]:
    if not isinstance(scope, dict) or not isinstance(scope.get("groups"), list) or not scope["groups"]:
        return [Problem(at, "must be a filter: {groups: [{name, clauses: [...]}]} or null")]
    found: list[Problem] = []
    for g, group in enumerate(scope["groups"]):
        if not isinstance(group, dict) or not isinstance(group.get("name"), str) \
                or not isinstance(group.get("clauses"), list) or not group["clauses"]:
            found.append(Problem(f"{at}.groups[{g}]", "must be {name, clauses: [at least one clause]}"))
            continue
        for c, clause in enumerate(group["clauses"]):
            where = f"{at}.groups[{g}].clauses[{c}]"
            operand = clause.get("targetOperand") if isinstance(clause, dict) else None
            if not isinstance(clause, dict) or not isinstance(clause.get("operatorName"), str) \
                    or not isinstance(clause.get("sourceOperandName"), str) or not isinstance(operand, dict) \
                    or not isinstance(operand.get("values"), list) \
                    or not all(isinstance(v, str) for v in operand["values"]):
                found.append(Problem(where, "must be {operatorName, sourceOperandName, targetOperand: {values: [strings]}}"))
    return found


# ----- against a template's schema -------------------------------------------------------

def _rule(schema: dict) -> dict:
    rules = schema.get("synchronizationRules") or []
    return rules[0] if rules and isinstance(rules[0], dict) else {}


def _directory_objects(schema: dict, directory_name: Any) -> dict[str, set[str]]:
    for directory in schema.get("directories") or []:
        if isinstance(directory, dict) and directory.get("name") == directory_name:
            return {str(o.get("name")): {str(a.get("name")) for a in o.get("attributes") or [] if isinstance(a, dict)}
                    for o in directory.get("objects") or [] if isinstance(o, dict)}
    return {}


def _object_mapping(schema: dict, source: str) -> dict | None:
    return next((m for m in _rule(schema).get("objectMappings") or []
                 if isinstance(m, dict) and m.get("sourceObjectName") == source), None)


def mapping_name(schema: dict, source: str) -> str:
    mapping = _object_mapping(schema, source) or {}
    return str(mapping.get("name") or source)


def expressions(profile: dict) -> list[tuple[str, str]]:
    """(path, expression) of every expression the profile sets (each goes to parseExpression)."""
    return [(f"objectMappings.{source}.attributeMappings.{target}", spec["expression"])
            for source, changes in profile["objectMappings"].items()
            for target, spec in (changes.get("attributeMappings") or {}).items() if isinstance(spec, dict)]


def check_against(schema: dict, profile: dict) -> list[Problem]:
    """What the template's schema cannot take: each problem names the object mapping and attribute."""
    found: list[Problem] = []
    rule = _rule(schema)
    sources = _directory_objects(schema, rule.get("sourceDirectoryName"))
    targets = _directory_objects(schema, rule.get("targetDirectoryName"))
    for source, changes in profile["objectMappings"].items():
        at = f"objectMappings.{source}"
        mapping = _object_mapping(schema, source)
        if mapping is None:
            known = ", ".join(str(m.get("sourceObjectName")) for m in rule.get("objectMappings") or [])
            found.append(Problem(at, f"the template has no object mapping for '{source}' (it has: {known or 'none'})"))
            continue
        label = f"object mapping '{mapping.get('name') or source}'"
        source_attrs = sources.get(source, set()) | PSEUDO_ATTRIBUTES | {"objectId"}
        target_attrs = targets.get(str(mapping.get("targetObjectName")), set())
        for g, group in enumerate((changes.get("scope") or {}).get("groups") or []):
            for c, clause in enumerate(group.get("clauses") or []):
                if clause.get("sourceOperandName") not in source_attrs:
                    found.append(Problem(f"{at}.scope.groups[{g}].clauses[{c}].sourceOperandName",
                                         f"{label}: '{clause.get('sourceOperandName')}' is not an attribute of {source}"))
        for target, spec in (changes.get("attributeMappings") or {}).items():
            where = f"{at}.attributeMappings.{target}"
            if target_attrs and target not in target_attrs:
                found.append(Problem(where, f"{label}: '{target}' is not an attribute of {mapping.get('targetObjectName')}"))
                continue
            if spec is None:
                continue
            for name in _ATTRIBUTE_REF.findall(spec["expression"]):
                if sources and name.strip() not in source_attrs:
                    found.append(Problem(f"{where}.expression",
                                         f"{label}, attribute mapping '{target}': '{name.strip()}' is not an attribute of {source}"))
    return found


# ----- apply, diff, fingerprint ----------------------------------------------------------

def _source_of(expression: str, parsed: dict | None) -> dict:
    """The attributeMappingSource to PUT: Graph's parsed form when there is one, else the simple form."""
    if parsed:
        return copy.deepcopy(parsed)
    match = re.fullmatch(r"\s*\[([^\]]+)\]\s*", expression)
    if match:
        return {"expression": expression, "name": match.group(1).strip(), "parameters": [], "type": "Attribute"}
    return {"expression": expression, "name": expression.split("(", 1)[0].strip(), "parameters": [], "type": "Function"}


def apply(schema: dict, profile: dict, parsed: dict[str, dict] | None = None) -> dict:
    """The schema with the profile applied (a new object; ``parsed``: expression -> parsedExpression)."""
    desired = copy.deepcopy(schema)
    for key in ("@odata.context", "id"):
        desired.pop(key, None)
    for source, changes in profile["objectMappings"].items():
        mapping = _object_mapping(desired, source)
        if mapping is None:
            raise InvalidRequest([Problem(f"objectMappings.{source}", f"the template has no object mapping for '{source}'")])
        if "enabled" in changes:
            mapping["enabled"] = changes["enabled"]
        if "scope" in changes:
            mapping["scope"] = copy.deepcopy(changes["scope"])
        attrs = mapping.setdefault("attributeMappings", [])
        for target, spec in (changes.get("attributeMappings") or {}).items():
            existing = next((a for a in attrs if a.get("targetAttributeName") == target), None)
            if spec is None:
                if existing is not None:
                    attrs.remove(existing)
                continue
            if existing is None:
                existing = {"defaultValue": None, "exportMissingReferences": False, "flowBehavior": "FlowWhenChanged",
                            "flowType": "Always", "matchingPriority": 0, "source": {}, "targetAttributeName": target}
                attrs.append(existing)
            existing["source"] = _source_of(spec["expression"], (parsed or {}).get(spec["expression"]))
            for key in ("matchingPriority", "flowType", "defaultValue"):
                if key in spec:
                    existing[key] = spec[key]
    return desired


def _view(schema: dict) -> dict[str, dict]:
    """The mapping-level view diffs and fingerprints compare (what a profile can change)."""
    view: dict[str, dict] = {}
    for mapping in _rule(schema).get("objectMappings") or []:
        if not isinstance(mapping, dict):
            continue
        view[str(mapping.get("sourceObjectName"))] = {
            "name": mapping.get("name"),
            "enabled": mapping.get("enabled", True) is not False,
            "scope": mapping.get("scope") or None,
            "attributes": {str(a.get("targetAttributeName")): {
                "expression": (a.get("source") or {}).get("expression"),
                "matchingPriority": a.get("matchingPriority", 0),
                "flowType": a.get("flowType", "Always"),
                "defaultValue": a.get("defaultValue"),
            } for a in mapping.get("attributeMappings") or [] if isinstance(a, dict)},
        }
    return view


def diff(actual: dict, desired: dict) -> list[dict]:
    """Mapping-level changes that turn ``actual`` into ``desired``: ``[{objectMapping, sourceObjectName,
    field, targetAttributeName?, change (add|remove|change), before, after}]`` (empty: nothing to do)."""
    before, after = _view(actual), _view(desired)
    changes: list[dict] = []
    for source in sorted(set(before) | set(after)):
        old, new = before.get(source), after.get(source)
        name = (new or old or {}).get("name") or source
        base = {"objectMapping": name, "sourceObjectName": source}
        if old is None or new is None:
            changes.append({**base, "field": "objectMapping", "change": "add" if old is None else "remove",
                            "before": old is not None, "after": new is not None})
            continue
        for field in ("enabled", "scope"):
            if old[field] != new[field]:
                changes.append({**base, "field": field, "change": "change", "before": old[field], "after": new[field]})
        for target in sorted(set(old["attributes"]) | set(new["attributes"])):
            a, b = old["attributes"].get(target), new["attributes"].get(target)
            if a == b:
                continue
            kind = "add" if a is None else ("remove" if b is None else "change")
            changes.append({**base, "field": "attributeMapping", "targetAttributeName": target, "change": kind,
                            "before": a, "after": b})
    return changes


def fingerprint(schema: dict) -> str:
    """A short hash of the mapping-level view (equal views, equal fingerprints)."""
    text = json.dumps(_view(schema), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
