"""Constants and helpers shared by the core tests (imported as ``core_support``).

Why not in conftest.py: several test folders have a conftest.py, and ``from conftest import ...``
picks whichever one pytest imported last when the folders run together.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from core import model, steps

REPO = Path(__file__).resolve().parents[2]
SEEDED_SECRETS = {name: item["value"] for name, item in
                  json.loads((REPO / "emulator/data/secrets.json").read_text())["secrets"].items()}
CUSTOM_TEMPLATE_ID = "8adf8e6e-67b2-4cf2-a259-e3dc5476c621"  # the non-gallery ("Custom") template, sync id "scim"
HEALTHY_CREDENTIALS = {"BaseAddress": "https://scim.contoso.test/scim/v2",
                       "SecretToken": {"keyVaultSecret": "scim-contoso-token"}}
WRONG_CREDENTIALS = {"BaseAddress": "https://scim.contoso.test/scim/v2",
                     "SecretToken": {"keyVaultSecret": "scim-contoso-wrong-token"}}
FAST = {
    "VISIBILITY_POLL_SECONDS": "0.05",
    "VISIBILITY_WAIT_SECONDS": "3",
    "GRAPH_RETRY_BUDGET_SECONDS": "6",
    "PROVISIONING_LOG_MIN_INTERVAL_SECONDS": "0.01",
}
_BEARER = re.compile(r"Bearer\s+[A-Za-z0-9._-]{20,}|eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}")


def secret_texts(extra: dict[str, str] | None = None) -> list[str]:
    values = list(SEEDED_SECRETS.values())
    values += [v for k, v in (extra or {}).items() if k.endswith("SECRET") and v]
    return values


def leaks(text: str, values: list[str]) -> list[str]:
    """Secret values (or bearer tokens) found in ``text``.

    Secret *names* are removed first: a seeded name such as ``scim-wingtip-token`` contains its
    own value ``wingtip-token``, and names may be logged.
    """
    for name in sorted(SEEDED_SECRETS, key=len, reverse=True):
        text = text.replace(name, "<name>")
    found = [v for v in values if v and v in text]
    found += _BEARER.findall(text)
    return found


def graph_requests(emu, **filters: Any) -> list[dict]:
    """The emulator's log of Graph requests (oldest first)."""
    return emu.admin.requests(kind="graph", **filters)["value"]


def creds(doc: dict) -> dict:
    return model.parse_credentials(doc)


def new_app(ctx, name: str, labels: dict | None = None, credentials: dict | None = None,
            notification_email: str | None = None, **notes_fields) -> dict:
    """ensure_application, then wait_until_visible (which applies the tags and notes), as provision_instance does."""
    key = model.instance_key(name)
    found = steps.ensure_application(ctx, batch_id="b1", instance_key=key, display_name=name,
                                     template_id=CUSTOM_TEMPLATE_ID, labels=labels)
    seen = steps.wait_until_visible(ctx, service_principal_id=found["servicePrincipalId"], instance_key=key,
                                    labels=labels, credentials=creds(credentials) if credentials else None,
                                    notification_email=notification_email, **notes_fields)
    assert seen["tagged"] is True
    return found
