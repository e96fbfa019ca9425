"""Orchestrators: deterministic generators that drive the provisioning workflow.

``provision_batch`` fans out one ``provision_instance`` per requested app instance (bounded in
flight) and fans in to a batch report - over ``provision_sub_batch`` slices; ``provision_instance`` runs the setup activities and then
``monitor_job``; ``monitor_job`` polls the job on durable timers until steady state, quarantine or
its deadline; ``health_sweep`` classifies every managed instance; ``fleet_action`` runs one operator
action on its targets; ``apply_profile`` and ``schema_rollout`` apply schema profiles, ``enforce_drift`` puts drifted instances back. Importing this
package registers them all on :data:`bp`, which ``function_app.py`` registers on the app.

Rules for everything in here: no I/O, no clock but ``context.current_utc_datetime``, no waiting but
durable timers, settings only from the ``options`` dict in the input, and no secret in inputs,
outputs, custom status or errors (credentials travel as Key Vault references).
"""

from orchestrators.blueprint import bp
from orchestrators import (apply_profile, enforce_drift, fleet_action, health_sweep,  # noqa: F401  (registers)
                           health_sweep_page, monitor_job, provision_batch, provision_instance, provision_sub_batch,
                           rollout)

from orchestrators.rotate_secret import bp as rotation_bp  # noqa: E402  (its own blueprint: rotate_secret)

__all__ = ["bp", "rotation_bp"]
