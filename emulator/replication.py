"""Read replicas: what one replica of the directory shows of an application or service principal.

Why: Entra's directory is eventually consistent. "The write is accepted first and replicated
asynchronously across directory replicas", so a newly created object may answer "Not Found" and a
recent update may not be visible yet, and "reads are served from nearby replicas"
(https://devblogs.microsoft.com/identity/designing-for-eventual-consistency-for-microsoft-entra/).
Microsoft's developer support describes the same 404 for an object created a moment before: the
next request "went to a different node where the id did not yet exist"
(https://blogs.aaddevsup.xyz/2021/08/why-do-i-sometimes-get-a-404-when-trying-to-update-an-azure-directory-object-after-i-just-created-it/).
Clients therefore read until the object is found several times in a row: Terraform's azuread
provider waits for 5 consecutive successes at least 5 s apart after instantiate
(``consistency.WaitForUpdate``,
https://github.com/hashicorp/terraform-provider-azuread/blob/main/internal/helpers/consistency/consistency.go,
``ContinuousTargetOccurence: 5``, ``MinTimeout: 5 * time.Second``) and for 5 consecutive 404s
after a delete (``WaitForDeletion``).

Model (fault ``replicationLag.replicas``, a list of lags in simulated seconds, one per replica):
every Graph request lands on one replica at random (:meth:`emulator.faults.Faults.pick_replica`);
a replica with lag L shows each write once it is L seconds old, in write order. So while a write
is younger than the largest lag, successive reads may show it, then not, then show it again;
after the largest lag every replica agrees (convergence). Writes themselves are applied to the one
true copy; a PATCH or DELETE routed to a replica that has not seen the object's creation yet
answers 404 (the case the support article describes).

What is replicated: applications and service principals (create, PATCH, DELETE) and new
synchronization jobs (existence only). Seeded objects and objects restored from ``--state-dir``
are long replicated. Other objects (users, groups, app role assignments, secrets, job status) are
always read current - an UNMODELLED simplification, stated in emulator/README.md.
"""

from __future__ import annotations

import copy

#: objects with recorded writes above which the old records of all of them are dropped
_PRUNE_ABOVE = 1000


def record_change(directory, collection: str, object_id: str, before: dict, now: float, keep_seconds: float) -> None:
    """Remember ``before`` (the object as it was until ``now``) for replicas that lag behind.

    Called for a PATCH or DELETE. Entries older than ``keep_seconds`` (the largest lag) are dropped:
    every replica has seen them.
    """
    if len(directory.changes) > _PRUNE_ABOVE:  # a long run: forget what every replica has seen
        for known in list(directory.changes):
            kept = [c for c in directory.changes[known] if now - c[0] < keep_seconds]
            if kept:
                directory.changes[known] = kept
            else:
                del directory.changes[known]
    changes = directory.changes.setdefault(object_id, [])
    changes[:] = [c for c in changes if now - c[0] < keep_seconds]
    changes.append((now, collection, copy.deepcopy(before)))


def as_seen(directory, object_id: str, live: dict | None, lag: float, now: float) -> dict | None:
    """The object as a replica ``lag`` seconds behind shows it at ``now`` (None: not there).

    In write order: not there until its creation is ``lag`` old; then, if a later PATCH or DELETE
    is younger than ``lag``, the object as it was before the oldest such write; else the live copy
    (None once a delete has reached the replica).
    """
    created = directory.created_at.get(object_id)
    if created is not None and now - created < lag:
        return None
    for written, _, before in directory.changes.get(object_id, ()):
        if now - written < lag:
            return before
    return live


def listed(directory, collection: str, lag: float, now: float) -> list[dict]:
    """The collection as a replica ``lag`` seconds behind lists it (deleted objects it has not caught up with included)."""
    live: dict = getattr(directory, collection)
    items = []
    for object_id, obj in live.items():
        seen = as_seen(directory, object_id, obj, lag, now)
        if seen is not None:
            items.append(seen)
    for object_id, changes in directory.changes.items():
        if object_id in live or not changes or changes[0][1] != collection:
            continue
        seen = as_seen(directory, object_id, None, lag, now)
        if seen is not None:
            items.append(seen)
    return items
