"""Triggers: thin adapters that parse, validate, start one named orchestrator and answer.

* ``http_submit_provisioning_request`` - ``POST /api/provisioning-requests`` (function key).
* ``http_get_provisioning_request``    - ``GET /api/provisioning-requests/{id}``.
* ``queue_provisioning_request``      - queue ``provisioning-requests``; invalid messages go to
  ``provisioning-requests-rejected`` with their errors.
* ``timer_health_sweep``              - ``%HEALTH_SWEEP_SCHEDULE%``; starts ``health_sweep``.
* ``http_preflight``                  - ``GET /api/preflight`` (function key): the preflight table,
  200 when every check passes, 503 when one fails (``triggers/http_preflight.py`` over ``core/preflight.py``).
* ``triggers/http_fleet.py``          - fleet operations (function key): ``/api/instances`` (inventory,
  teardown, adoption), ``/api/instances/{key}/actions``, ``/api/actions``, ``/api/plans``.

Importing this package registers them all on :data:`bp`.
"""

from triggers.blueprint import bp
from triggers import http_fleet, http_preflight, http_profiles, http_requests, http_rollouts, queue_requests, timer_sweep  # noqa: F401  (registers)

from triggers.rotation import bp as rotation_bp  # noqa: E402  (its own blueprint: rotations, calendar)
from triggers import eventgrid_rotation  # noqa: E402,F401  (registers the Event Grid trigger on rotation_bp)

__all__ = ["bp", "rotation_bp"]
