"""Every Durable function name and queue name, in one place.

Why: the orchestrators call activities and sub-orchestrations by *string name*; a typo there fails
only at run time, inside the Durable host. Keeping every name here lets each part import the same
constant (and lets tests check that every name is registered exactly once). Imports nothing.
"""

# Orchestrators
PROVISION_BATCH = "provision_batch"
PROVISION_INSTANCE = "provision_instance"
MONITOR_JOB = "monitor_job"
HEALTH_SWEEP = "health_sweep"
HEALTH_SWEEP_PAGE = "health_sweep_page"

ORCHESTRATORS = (PROVISION_BATCH, PROVISION_INSTANCE, MONITOR_JOB, HEALTH_SWEEP, HEALTH_SWEEP_PAGE)

# Activities (architecture.md section 3)
RESOLVE_APPLICATION_TEMPLATE = "resolve_application_template"
ENSURE_APPLICATION = "ensure_application"
WAIT_UNTIL_VISIBLE = "wait_until_visible"
ENSURE_JOB = "ensure_job"
VALIDATE_CREDENTIALS = "validate_credentials"
SAVE_SECRETS = "save_secrets"
ASSIGN_PRINCIPALS = "assign_principals"
START_JOB = "start_job"
GET_JOB_STATUS = "get_job_status"
GET_PROVISIONING_ERRORS = "get_provisioning_errors"
LIST_MANAGED_INSTANCES = "list_managed_instances"
RESTART_QUARANTINED_JOB = "restart_quarantined_job"
DISCARD_APPLICATION = "discard_application"
STAGE_SWEEP_REPORT = "stage_sweep_report"
COMMIT_SWEEP_REPORT = "commit_sweep_report"

ACTIVITIES = (
    RESOLVE_APPLICATION_TEMPLATE,
    ENSURE_APPLICATION,
    WAIT_UNTIL_VISIBLE,
    ENSURE_JOB,
    VALIDATE_CREDENTIALS,
    SAVE_SECRETS,
    ASSIGN_PRINCIPALS,
    START_JOB,
    GET_JOB_STATUS,
    GET_PROVISIONING_ERRORS,
    LIST_MANAGED_INSTANCES,
    RESTART_QUARANTINED_JOB,
    DISCARD_APPLICATION,
    STAGE_SWEEP_REPORT,
    COMMIT_SWEEP_REPORT,
)

# Triggers
HTTP_SUBMIT_PROVISIONING_REQUEST = "http_submit_provisioning_request"
HTTP_GET_PROVISIONING_REQUEST = "http_get_provisioning_request"
QUEUE_PROVISIONING_REQUEST = "queue_provisioning_request"
TIMER_HEALTH_SWEEP = "timer_health_sweep"
HTTP_PREFLIGHT = "http_preflight"

TRIGGERS = (
    HTTP_SUBMIT_PROVISIONING_REQUEST,
    HTTP_GET_PROVISIONING_REQUEST,
    QUEUE_PROVISIONING_REQUEST,
    TIMER_HEALTH_SWEEP,
    HTTP_PREFLIGHT,
)

# Storage queues
QUEUE_PROVISIONING_REQUESTS = "provisioning-requests"
QUEUE_PROVISIONING_REQUESTS_REJECTED = "provisioning-requests-rejected"

ALL_FUNCTIONS = ORCHESTRATORS + ACTIVITIES + TRIGGERS
