"""What the provisioning simulation needs to read from the emulated directory.

The directory (users, groups, service principals, app role assignments) belongs to the server
part of the emulator; the simulation reads it through this narrow protocol, so neither side
depends on the other's internals. Its one write is ``put_app_role``: a role-import job (AWS
Single-Account Access) writes the roles it imports into the service principal's ``appRoles``.
"""

from __future__ import annotations

from typing import Protocol


class DirectoryView(Protocol):
    """View of the emulated tenant's directory. Every method returns Graph-shaped dicts."""

    def get_service_principal(self, sp_id: str) -> dict | None:
        """The service principal with object id ``sp_id``, or None when it does not exist."""

    def assigned_principals(self, sp_id: str) -> list[dict]:
        """Users and groups assigned to the SP through appRoleAssignedTo (each with ``@odata.type``)."""

    def all_users(self) -> list[dict]:
        """Every user of the tenant (scope "sync all")."""

    def all_groups(self) -> list[dict]:
        """Every group of the tenant (scope "sync all")."""

    def group_members(self, group_id: str) -> list[dict]:
        """Direct members of a group (nested groups are not provisioned, as in Entra)."""

    def put_app_role(self, sp_id: str, role: dict) -> None:
        """Add the appRole to the service principal's ``appRoles``, or replace the one with its id."""
