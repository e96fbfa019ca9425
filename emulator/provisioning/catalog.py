"""The gallery catalog (``emulator/data/catalog.json``): application templates and their connectors.

The JSON file is the single source of the templates; this module only loads it, resolves each
synchronization template's ``schemaRef`` into a full schema, and answers look-ups.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
CATALOG_PATH = DATA_DIR / "catalog.json"

# Fields of an applicationTemplate as Graph returns it (everything else in the file is emulator data).
TEMPLATE_FIELDS = (
    "id",
    "displayName",
    "homePageUrl",
    "supportedSingleSignOnModes",
    "supportedProvisioningTypes",
    "logoUrl",
    "categories",
    "publisher",
    "description",
)
SYNC_TEMPLATE_FIELDS = ("id", "applicationId", "default", "description", "discoverable", "factoryTag", "metadata", "schema")


def load_catalog(path: str | Path | None = None) -> dict:
    """Load the catalog and resolve ``schemaRef`` links; raises ValueError on a broken file."""
    source = Path(path) if path else CATALOG_PATH
    with open(source, encoding="utf-8") as handle:
        catalog = json.load(handle)
    schemas = catalog.get("schemas", {})
    seen: set[str] = set()
    for template in catalog.get("applicationTemplates", []):
        if template["id"] in seen:
            raise ValueError(f"catalog: duplicate application template id {template['id']}")
        seen.add(template["id"])
        for sync in template.get("synchronizationTemplates", []):
            ref = sync.pop("schemaRef", None)
            if ref is not None:
                if ref not in schemas:
                    raise ValueError(f"catalog: template {sync['id']} names unknown schema {ref!r}")
                sync["schema"] = copy.deepcopy(schemas[ref])
            sync.setdefault("schema", {"directories": [], "synchronizationRules": []})
    return catalog


def find_template(catalog: dict, template_id: str) -> dict | None:
    """The catalog entry of an application template (case-insensitive id), or None."""
    wanted = template_id.lower()
    for template in catalog.get("applicationTemplates", []):
        if template["id"].lower() == wanted:
            return template
    return None


def public_template(template: dict) -> dict:
    """The applicationTemplate object as Graph serves it (no emulator-only fields)."""
    return {name: copy.deepcopy(template.get(name)) for name in TEMPLATE_FIELDS}


def sync_templates(catalog: dict, template_id: str | None) -> list[dict]:
    """The synchronization templates (full emulator records) of an application template."""
    template = find_template(catalog, template_id) if template_id else None
    return list(template.get("synchronizationTemplates", [])) if template else []


def public_sync_template(sync: dict, application_id: str) -> dict:
    """A synchronizationTemplate as Graph serves it, bound to one application (appId)."""
    body = {name: copy.deepcopy(sync.get(name)) for name in SYNC_TEMPLATE_FIELDS}
    body["applicationId"] = application_id
    return body


def target_types(schema: dict) -> tuple[str, str]:
    """Target object names for users and groups, from the schema's object mappings."""
    user_type, group_type = "User", "Group"
    rules = schema.get("synchronizationRules") if isinstance(schema, dict) else None
    for rule in rules if isinstance(rules, list) else []:
        mappings = rule.get("objectMappings") if isinstance(rule, dict) else None
        for mapping in mappings if isinstance(mappings, list) else []:
            target = mapping.get("targetObjectName") if isinstance(mapping, dict) else None
            if not isinstance(target, str) or not target:
                continue  # anything malformed keeps the defaults (put_schema refuses it anyway)
            if mapping.get("sourceObjectName") == "User":
                user_type = target
            if mapping.get("sourceObjectName") == "Group":
                group_type = target
    return user_type, group_type
