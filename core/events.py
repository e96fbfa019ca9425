"""The structured events the app logs: one JSON object per log line, ``{"event": <name>, ...}``.

Why one module: the alert rules and the workbook (infra/app/alerts.bicep) and the queries in
docs/fleet-operations.md select log lines by these names (``traces`` in Application Insights, where
the Functions host forwards the worker's log records: ``message`` is the JSON text). A name used in a
query but never logged is an alert that never fires, so every name is defined here once and the
deploy tests check that each query names only these.
Log these lines on the invocation's own thread: the Python worker may drop a record logged from an
``asyncio.to_thread`` / executor thread that lacks the invocation id (docs/fleet-operations.md).

Events and their fields (besides ``event``):

* ``unhealthyProvisioningInstance`` - per unhealthy instance per sweep: ``sweepId`` and the sweep entry
  (``servicePrincipalId``, ``displayName``, ``jobId``, ``category``, ``reason``, ...).
* ``provisioningClassificationChanged`` - an instance's sweep category differs from the previous
  sweep's: ``sweepId``, ``servicePrincipalId``, ``instanceKey``, ``displayName``, ``from``, ``to``,
  ``reason`` (quarantine reason, if any), ``owner`` (the instance's ``owner`` label, or null).
* ``healthSweepCompleted`` - once per sweep: ``sweepId``, ``total``, ``counts`` (per category),
  ``quarantinedByReason``, ``durationSeconds`` (and ``pages``, ``rotationsStarted``,
  ``classificationChanges``, ``credentialsExpiring``, ``report``, ``driftCounts`` (null unless
  ``SWEEP_DRIFT_CHECK``)).
* ``provisioningBatchCompleted`` - once per batch, by ``provision_batch`` when it completes (not when
  replaying): ``batchId``, ``requestId``, ``total``, ``counts`` (per outcome), ``durationSeconds``.
* ``credentialRotationFailed`` - per instance a rotation could not rotate: ``rotationId``,
  ``servicePrincipalId``, ``displayName``, ``outcome``, ``reason``.
* ``credentialRotationCompleted`` - once per rotation: ``rotationId``, ``secretName``, ``version``,
  ``source``, ``dryRun``, ``counts`` (per outcome), ``total``, ``durationSeconds``.
* ``credentialExpiry`` - per secret expiring within ``CREDENTIAL_EXPIRY_WARNING_DAYS`` or expired:
  ``secretName``, ``expires``, ``daysLeft``, ``expired``, ``instances``, ``state`` (``expired`` /
  ``expiring``; reading the credential calendar logs nothing); a Key Vault SecretNearExpiry /
  SecretExpired event (``source``: ``keyVaultEvent``) adds ``eventId``, ``eventType``, ``version``,
  ``state`` (``instances``: how many registered instances reference it); the sweep's line, once per sweep, adds ``sweepId``, ``version`` and ``state``.
* ``keyVaultEventMalformed`` - an Event Grid event the app could not read: ``eventId``, ``eventType``,
  ``problems``.
"""

from __future__ import annotations

import json
from typing import Any

UNHEALTHY_INSTANCE = "unhealthyProvisioningInstance"
CLASSIFICATION_CHANGED = "provisioningClassificationChanged"
SWEEP_COMPLETED = "healthSweepCompleted"
BATCH_COMPLETED = "provisioningBatchCompleted"
ROTATION_FAILED = "credentialRotationFailed"
ROTATION_COMPLETED = "credentialRotationCompleted"
CREDENTIAL_EXPIRY = "credentialExpiry"
KEY_VAULT_EVENT_MALFORMED = "keyVaultEventMalformed"

#: every event name (the deploy tests check that the monitoring queries use only these)
EVENTS = (UNHEALTHY_INSTANCE, CLASSIFICATION_CHANGED, SWEEP_COMPLETED, BATCH_COMPLETED, ROTATION_FAILED,
          ROTATION_COMPLETED, CREDENTIAL_EXPIRY, KEY_VAULT_EVENT_MALFORMED)


def event_line(event: str, **fields: Any) -> str:
    """One log line: ``{"event": event, **fields}`` as JSON with sorted keys (never pass a secret value)."""
    if event not in EVENTS:
        raise ValueError(f"unknown event {event!r}: add it to core.events")
    return json.dumps({"event": event, **fields}, sort_keys=True, default=str)
