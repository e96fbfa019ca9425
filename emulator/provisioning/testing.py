"""Test doubles shipped with the simulation: an in-memory directory and a hand-driven clock.

The emulator's server has the real directory and a real-time clock; these let the provisioning
simulation run alone (unit tests, benchmarks, experiments) with time moved explicitly.
"""

from __future__ import annotations

import random
import uuid
from datetime import datetime, timedelta, timezone

from emulator.clock import Clock

START = datetime(2026, 11, 27, 10, 0, 0, tzinfo=timezone.utc)


class FrozenClock(Clock):
    """A :class:`Clock` that only moves when :meth:`advance` is called."""

    def __init__(self, start: datetime = START) -> None:
        super().__init__(scale=1.0, start=start)
        self._frozen = start

    def now(self) -> datetime:
        return self._frozen

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("cannot move the clock backward")
        self._frozen += timedelta(seconds=seconds)


def make_service(seed: int = 1, settings: dict | None = None, directory: "MemoryDirectory | None" = None, clock: Clock | None = None):
    """A ProvisioningService over a MemoryDirectory and a FrozenClock: ``(service, directory, clock)``."""
    from emulator.provisioning.catalog import load_catalog
    from emulator.provisioning.service import ProvisioningService

    directory = directory or MemoryDirectory()
    clock = clock or FrozenClock()
    service = ProvisioningService(clock, random.Random(seed), directory, load_catalog(), settings or {})
    return service, directory, clock


class MemoryDirectory:
    """Users, groups, service principals and assignments held in plain dicts."""

    def __init__(self, tenant_id: str = "8500cad3-193d-48a6-8d00-c129b114dc10") -> None:
        self.tenant_id = tenant_id
        self.users: dict[str, dict] = {}
        self.groups: dict[str, dict] = {}
        self.members: dict[str, list[str]] = {}
        self.service_principals: dict[str, dict] = {}
        self.assignments: dict[str, list[str]] = {}
        self._counter = 0

    def new_id(self) -> str:
        """Deterministic GUIDs (two directories built the same way have the same ids)."""
        self._counter += 1
        return str(uuid.UUID(int=(0xA2 << 120) + self._counter))

    def add_user(self, name: str, user_id: str | None = None, **extra: object) -> dict:
        """Create a user named ``name`` (UPN derived from it)."""
        uid = user_id or self.new_id()
        slug = name.lower().replace(" ", ".")
        user = {"@odata.type": "#microsoft.graph.user", "id": uid, "displayName": name, "userPrincipalName": f"{slug}@contoso.test", "mail": f"{slug}@contoso.test", "accountEnabled": True}
        user.update(extra)
        self.users[uid] = user
        return user

    def add_group(self, name: str, members: list[str] = (), group_id: str | None = None) -> dict:
        """Create a security group with direct ``members`` (user or group ids)."""
        gid = group_id or self.new_id()
        group = {"@odata.type": "#microsoft.graph.group", "id": gid, "displayName": name, "mailEnabled": False, "securityEnabled": True, "mailNickname": name.replace(" ", "")}
        self.groups[gid] = group
        self.members[gid] = list(members)
        return group

    def add_service_principal(self, display_name: str, template_id: str | None = None, sp_id: str | None = None) -> dict:
        """Create a service principal as instantiate would (owner tenant set)."""
        sid = sp_id or self.new_id()
        sp = {"id": sid, "appId": self.new_id(), "displayName": display_name, "applicationTemplateId": template_id, "appOwnerOrganizationId": self.tenant_id}
        self.service_principals[sid] = sp
        return sp

    def assign(self, sp_id: str, principal_id: str) -> None:
        """Assign a user or group to the SP."""
        self.assignments.setdefault(sp_id, []).append(principal_id)

    def unassign(self, sp_id: str, principal_id: str) -> None:
        """Remove an assignment."""
        self.assignments.get(sp_id, []).remove(principal_id)

    # DirectoryView
    def get_service_principal(self, sp_id: str) -> dict | None:
        return self.service_principals.get(sp_id)

    def assigned_principals(self, sp_id: str) -> list[dict]:
        return [self.users.get(pid) or self.groups[pid] for pid in self.assignments.get(sp_id, []) if pid in self.users or pid in self.groups]

    def all_users(self) -> list[dict]:
        return list(self.users.values())

    def all_groups(self) -> list[dict]:
        return list(self.groups.values())

    def group_members(self, group_id: str) -> list[dict]:
        return [self.users.get(m) or self.groups[m] for m in self.members.get(group_id, []) if m in self.users or m in self.groups]

    def put_app_role(self, sp_id: str, role: dict) -> None:
        roles = self.service_principals[sp_id].setdefault("appRoles", [])
        for index, existing in enumerate(roles):
            if existing.get("id") == role["id"]:
                roles[index] = dict(role)
                return
        roles.append(dict(role))
