"""What a job's synchronizationSchema makes the engine export: object mappings, attribute mappings,
scoping filters (https://learn.microsoft.com/graph/api/resources/synchronization-synchronizationschema,
https://learn.microsoft.com/graph/api/resources/synchronization-objectmapping,
https://learn.microsoft.com/graph/api/resources/synchronization-attributemapping).

* ``check(schema)``: the 400 message for a mapping the engine cannot use (None: usable): an
  expression that does not parse, a source attribute the source directory's object does not
  define, a target attribute the target directory's object does not define, a bad scoping filter.
  Each message names the object mapping and the target attribute. UNCONFIRMED: Graph's wording
  (its answer is a 400); the emulator names the mapping so a client can show it.
* ``compile_schema(schema)``: the compact form a cycle carries (per source object: enabled, the
  ``[target, expression]`` pairs, the scoping filter).
* ``project(obj, compiled)``: the exported values of one source object, or why it is not exported.
"""

from __future__ import annotations

import json

from emulator.provisioning import expressions as ex


def _objects(schema: dict, directory_name: str | None) -> dict[str, set[str]]:
    for directory in schema.get("directories") or []:
        if isinstance(directory, dict) and directory.get("name") == directory_name:
            return {str(o.get("name")): {str(a.get("name")) for a in o.get("attributes") or [] if isinstance(a, dict)}
                    for o in directory.get("objects") or [] if isinstance(o, dict)}
    return {}


def mapping_label(mapping: dict, index: int) -> str:
    return f"objectMapping '{mapping.get('name') or mapping.get('sourceObjectName') or index}'"


def check(schema: dict) -> str | None:
    """The first problem that makes the schema unusable (None when every mapping is usable)."""
    for rule in schema.get("synchronizationRules") or []:
        sources = _objects(schema, rule.get("sourceDirectoryName"))
        targets = _objects(schema, rule.get("targetDirectoryName"))
        for index, mapping in enumerate(rule.get("objectMappings") or []):
            where = mapping_label(mapping, index)
            known = sources.get(str(mapping.get("sourceObjectName")))
            target_known = targets.get(str(mapping.get("targetObjectName")))
            if sources and known is None:
                return f"{where}: source object '{mapping.get('sourceObjectName')}' is not defined in directory '{rule.get('sourceDirectoryName')}'."
            if targets and target_known is None:
                return f"{where}: target object '{mapping.get('targetObjectName')}' is not defined in directory '{rule.get('targetDirectoryName')}'."
            problem = ex.check_scope(mapping.get("scope"), where, (known or set()) | ex.PSEUDO_ATTRIBUTES)
            if problem:
                return problem + "."
            for attr in mapping.get("attributeMappings") or []:
                target = attr.get("targetAttributeName")
                at = f"{where}, attributeMapping '{target}'"
                if target_known is not None and target not in target_known:
                    return f"{at}: '{target}' is not an attribute of '{mapping.get('targetObjectName')}'."
                source = attr.get("source")
                if not isinstance(source, dict) or not isinstance(source.get("expression"), str):
                    return f"{at}: source.expression must be a string."
                try:
                    node = ex.parse(source["expression"])
                except ex.ExpressionError as error:
                    return f"{at}: the expression does not parse: {error}."
                if known is not None:
                    unknown = [a for a in ex.attributes(node) if a not in known and a not in ex.PSEUDO_ATTRIBUTES]
                    if unknown:
                        return f"{at}: '{unknown[0]}' is not an attribute of source object '{mapping.get('sourceObjectName')}'."
    return None


def compile_schema(schema: dict) -> dict:
    """``{sourceObjectName: {"enabled", "name", "attributes": [[target, expression]], "scope"}}`` of the
    first rule (the one a job's cycles run); {} when the schema maps nothing."""
    for rule in schema.get("synchronizationRules") or []:
        found = {}
        required = _required(schema, rule.get("targetDirectoryName"))
        for mapping in rule.get("objectMappings") or []:
            source = str(mapping.get("sourceObjectName") or "")
            if not source or source in found:
                continue
            found[source] = {
                "required": sorted(required.get(str(mapping.get("targetObjectName")), set())),
                "enabled": mapping.get("enabled", True) is not False,
                "name": mapping.get("name") or source,
                "attributes": [[a.get("targetAttributeName"), (a.get("source") or {}).get("expression")]
                               for a in mapping.get("attributeMappings") or []
                               if isinstance((a.get("source") or {}).get("expression"), str)],
                "scope": mapping.get("scope"),
            }
        if found:
            return found
    return {}


def _required(schema: dict, directory_name: str | None) -> dict[str, set[str]]:
    """Target object -> its attributes marked ``required`` (attributeDefinition.required)."""
    for directory in schema.get("directories") or []:
        if isinstance(directory, dict) and directory.get("name") == directory_name:
            return {str(o.get("name")): {str(a.get("name")) for a in o.get("attributes") or []
                                         if isinstance(a, dict) and a.get("required") is True}
                    for o in directory.get("objects") or [] if isinstance(o, dict)}
    return {}


def missing_required(obj_type: str, values: dict, compiled: dict) -> list[str]:
    """Required target attributes the exported values lack (the target refuses such an export)."""
    mapping = compiled.get(obj_type) or {}
    return [name for name in mapping.get("required") or [] if not values.get(name)]


#: outcomes of :func:`project`
EXPORT, UNMAPPED, OUT_OF_FILTER = "export", "unmapped", "outOfFilter"


def project(obj: dict, compiled: dict) -> tuple[str, dict, str]:
    """(outcome, exported values, reason) of a source object under the compiled mappings.

    UNMAPPED: no enabled object mapping for its type (not synchronized). OUT_OF_FILTER: the scoping
    filter refuses it (reason: the filter groups it failed). EXPORT: values = target attribute ->
    value for every attribute mapping whose expression gives a value.
    """
    mapping = compiled.get(obj["type"])
    if mapping is None or not mapping["enabled"]:
        return UNMAPPED, {}, ""
    source = obj.get("source") or obj.get("attrs") or {}
    failed = ex.failed_scope(mapping.get("scope"), source)
    if failed is not None:
        return OUT_OF_FILTER, {}, failed
    values: dict[str, str] = {}
    for target, expression in mapping["attributes"]:
        try:
            value = ex.evaluate(ex.parse(expression), source)
        except ex.ExpressionError:
            continue  # refused at PUT; a stored schema from before the check exports nothing for it
        if value is not None and target:
            values[str(target)] = value
    return EXPORT, values, ""


def values_hash(values: dict) -> str:
    return json.dumps(values, sort_keys=True)
