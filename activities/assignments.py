"""Activities of the assignments family: assign users and groups to the app (and count the roles a
role-import job imported)."""

from __future__ import annotations

from typing import Any

import azure.durable_functions as df

from activities.runner import run
from core import names, steps
from core.contracts import AssignPrincipalsInput

bp = df.Blueprint()


def assign_principals_body(p: dict[str, Any], ctx: steps.StepContext) -> dict[str, Any]:
    i = AssignPrincipalsInput.from_dict(p)
    return steps.assign_principals(ctx, service_principal_id=i.service_principal_id, users=i.users, groups=i.groups,
                                   app_role=i.app_role, count_imported_roles=i.count_imported_roles)


BODIES = {names.ASSIGN_PRINCIPALS: assign_principals_body}


@bp.function_name(names.ASSIGN_PRINCIPALS)
@bp.activity_trigger(input_name="payload")
def assign_principals(payload: dict) -> dict:
    return run(names.ASSIGN_PRINCIPALS, payload, assign_principals_body)
