"""Steps of the assignments family: assign users and groups to the app (and count the roles a
role-import job imported)."""

from __future__ import annotations

import logging
from typing import Iterable

from core import errors
from core.graph import applications as apps
from core.graph import assignments as assign
from core.steps.context import _DUPLICATE_ASSIGNMENT, StepContext, _wait_for

logger = logging.getLogger("core.steps")



def assign_principals(ctx: StepContext, *, service_principal_id: str, users: Iterable[str] = (),
                      groups: Iterable[str] = (), app_role: str | None = None,
                      count_imported_roles: bool = False) -> dict:
    """Assign users (id or UPN) and groups (id or name) to the app; existing assignments are kept.

    Without ``app_role`` each principal gets the default role (:func:`assign.pick_app_role`) once.
    With it, each gets that role (by value or displayName; ``AppRoleNotFound`` names the roles there
    are when the SP has none such). ``count_imported_roles`` (a role-import template, run after the
    job's first cycle) also answers ``rolesImported``: the SP's enabled app roles of origin
    ``ServicePrincipal``, which is where the job writes what it imports.
    """
    sp_id = service_principal_id
    result: dict = {}
    sp: dict | None = None
    if count_imported_roles:
        sp = _read_imported_roles(ctx, sp_id, app_role)
        result["rolesImported"] = len(assign.imported_roles(sp))
    wanted = [assign.resolve_user(ctx.graph, u) for u in users] + [assign.resolve_group(ctx.graph, g) for g in groups]
    if not wanted:
        return {"assigned": 0, "alreadyAssigned": 0, **result}
    listed = _wait_for(ctx, f"list assignments of {sp_id}", lambda: assign.list_assigned(ctx.graph, sp_id))
    if sp is None:
        sp = _wait_for(ctx, f"read {sp_id}", lambda: apps.get_service_principal(ctx.graph, sp_id, select="id,appRoles"))
    if app_role:
        found = assign.find_app_role(sp, app_role)
        if found is None:
            raise errors.PermanentError(_missing_role_message(sp, app_role, count_imported_roles), code="AppRoleNotFound")
        role = str(found["id"])
        # a principal may hold several roles of one app: only this role counts as already assigned
        existing = {str(a.get("principalId")) for a in listed if str(a.get("appRoleId")).lower() == role.lower()}
    else:
        role = assign.pick_app_role(sp)
        existing = {str(a.get("principalId")) for a in listed}
    assigned = already = 0
    for principal in dict.fromkeys(wanted):
        if principal in existing:
            already += 1
            continue
        try:
            _wait_for(ctx, f"assign {principal} to {sp_id}", lambda: assign.assign(ctx.graph, sp_id, principal, role),
                      retry_on=(errors.NotFound,))
            assigned += 1
        except errors.Conflict:
            already += 1
        except errors.BadRequest as refused:
            # Entra answers a duplicate assignment 400 ("Permission being assigned already exists on
            # the object"), not 409: the list above missed it (lag, or a lost 201 before a re-run).
            # Accepted when Graph says so or the list now shows it; any other 400 fails the step.
            if not (_DUPLICATE_ASSIGNMENT in refused.message.casefold() or principal in {
                    str(a.get("principalId")) for a in assign.list_assigned(ctx.graph, sp_id)}):
                raise
            already += 1
    return {"assigned": assigned, "alreadyAssigned": already, **result}


def _read_imported_roles(ctx: StepContext, sp_id: str, app_role: str | None) -> dict:
    """The SP with its appRoles, read again while replication may still hide the imported roles.

    Steady state says the cycle wrote them; a read served by a replica that has not seen the write
    yet would report none (or miss ``app_role``), so a read without any imported role, or without the
    named one, is repeated within VISIBILITY_WAIT_SECONDS before it is believed.
    """
    deadline = ctx.monotonic() + ctx.settings.visibility_wait_seconds
    while True:
        sp = _wait_for(ctx, f"read {sp_id}", lambda: apps.get_service_principal(ctx.graph, sp_id, select="id,appRoles"))
        complete = assign.imported_roles(sp) and (not app_role or assign.find_app_role(sp, app_role) is not None)
        if complete or ctx.monotonic() + ctx.settings.visibility_poll_seconds > deadline:
            return sp
        ctx.sleep(ctx.settings.visibility_poll_seconds)


def _missing_role_message(sp: dict, app_role: str, imported: bool) -> str:
    names = [str(r.get("displayName") or r.get("value")) for r in sp.get("appRoles") or [] if r.get("isEnabled", True)]
    shown = ", ".join(f"'{n}'" for n in names[:20]) + (f" and {len(names) - 20} more" if len(names) > 20 else "")
    where = "after the job's first cycle imported " + f"{len(assign.imported_roles(sp))} roles" if imported else \
        "(for a role-import template such as AWS Single-Account Access the roles appear only after the job's " \
        "first cycle)"
    return f"the service principal has no enabled app role with value or displayName '{app_role}' {where}; " \
           f"its roles: {shown or 'none'}"
