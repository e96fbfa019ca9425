"""Every Durable function name and queue name, in one place.

Why: the orchestrators call activities and sub-orchestrations by *string name*; a typo there fails
only at run time, inside the Durable host. Keeping every name here lets each part import the same
constant (and lets tests check that every name is registered exactly once). Imports nothing.
"""

# Orchestrators
PROVISION_BATCH = "provision_batch"
PROVISION_SUB_BATCH = "provision_sub_batch"
PROVISION_INSTANCE = "provision_instance"
MONITOR_JOB = "monitor_job"
HEALTH_SWEEP = "health_sweep"
FLEET_ACTION = "fleet_action"
APPLY_PROFILE = "apply_profile"
SCHEMA_ROLLOUT = "schema_rollout"
ENFORCE_DRIFT = "enforce_drift"
ROTATE_SECRET = "rotate_secret"
HEALTH_SWEEP_PAGE = "health_sweep_page"

ORCHESTRATORS = (
    PROVISION_BATCH,
    PROVISION_SUB_BATCH,
    PROVISION_INSTANCE,
    MONITOR_JOB,
    HEALTH_SWEEP,
    FLEET_ACTION,
    APPLY_PROFILE,
    SCHEMA_ROLLOUT,
    ENFORCE_DRIFT,
    ROTATE_SECRET,
    HEALTH_SWEEP_PAGE,
)

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
FLEET_INSTANCE_ACTION = "fleet_instance_action"
# schema profiles (core/steps/profiles.py)
PLAN_SCHEMA_PROFILE = "plan_schema_profile"
APPLY_SCHEMA_PROFILE = "apply_schema_profile"
CHECK_INSTANCE_DRIFT = "check_instance_drift"
SUMMARIZE_CYCLE = "summarize_cycle"
ENFORCE_INSTANCE_DRIFT = "enforce_instance_drift"
# credential rotation (core/rotation_contracts.py)
LIST_SECRET_DEPENDENTS = "list_secret_dependents"
ROTATE_INSTANCE = "rotate_instance"
REBUILD_FLEET_REGISTRY = "rebuild_fleet_registry"
WRITE_BATCH_REPORT = "write_batch_report"
READ_BATCH_REPORT = "read_batch_report"
READ_REQUEST_PART = "read_request_part"
STAGE_SWEEP_REPORT = "stage_sweep_report"
COMMIT_SWEEP_REPORT = "commit_sweep_report"
# the paged sweep's duties (core/sweep_contracts.py): rotation safety net, classification record, expiry lines
CHECK_SWEEP_PAGE_LAG = "check_sweep_page_lag"
START_SWEEP_ROTATION = "start_sweep_rotation"
RECORD_SWEEP_RESULTS = "record_sweep_results"
CHECK_CREDENTIAL_EXPIRY = "check_credential_expiry"

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
    FLEET_INSTANCE_ACTION,
    PLAN_SCHEMA_PROFILE,
    APPLY_SCHEMA_PROFILE,
    CHECK_INSTANCE_DRIFT,
    SUMMARIZE_CYCLE,
    ENFORCE_INSTANCE_DRIFT,
    LIST_SECRET_DEPENDENTS,
    ROTATE_INSTANCE,
    REBUILD_FLEET_REGISTRY,
    WRITE_BATCH_REPORT,
    READ_BATCH_REPORT,
    READ_REQUEST_PART,
    STAGE_SWEEP_REPORT,
    COMMIT_SWEEP_REPORT,
    CHECK_SWEEP_PAGE_LAG,
    START_SWEEP_ROTATION,
    RECORD_SWEEP_RESULTS,
    CHECK_CREDENTIAL_EXPIRY,
)

# Triggers
HTTP_SUBMIT_PROVISIONING_REQUEST = "http_submit_provisioning_request"
HTTP_GET_PROVISIONING_REQUEST = "http_get_provisioning_request"
QUEUE_PROVISIONING_REQUEST = "queue_provisioning_request"
TIMER_HEALTH_SWEEP = "timer_health_sweep"
HTTP_PREFLIGHT = "http_preflight"
HTTP_LIST_INSTANCES = "http_list_instances"
HTTP_GET_INSTANCE = "http_get_instance"
HTTP_INSTANCE_ACTION = "http_instance_action"
HTTP_FLEET_ACTION = "http_fleet_action"
HTTP_GET_FLEET_ACTION = "http_get_fleet_action"
HTTP_TEARDOWN_INSTANCE = "http_teardown_instance"
HTTP_PLAN = "http_plan"
HTTP_ADOPT_INSTANCE = "http_adopt_instance"
HTTP_SCHEMA_DIFF = "http_schema_diff"
HTTP_SCHEMA_APPLY = "http_schema_apply"
HTTP_INSTANCE_DRIFT = "http_instance_drift"
HTTP_ENFORCE_INSTANCE_DRIFT = "http_enforce_instance_drift"
HTTP_ENFORCE_DRIFT = "http_enforce_drift"
HTTP_GET_DRIFT_ENFORCE = "http_get_drift_enforce"
HTTP_START_ROLLOUT = "http_start_rollout"
HTTP_GET_ROLLOUT = "http_get_rollout"
HTTP_ROLLOUT_ACTION = "http_rollout_action"
HTTP_START_ROTATION = "http_start_rotation"
HTTP_GET_ROTATION = "http_get_rotation"
HTTP_CREDENTIAL_CALENDAR = "http_credential_calendar"
EVENTGRID_KEY_VAULT_SECRET = "eventgrid_key_vault_secret"

TRIGGERS = (
    HTTP_SUBMIT_PROVISIONING_REQUEST,
    HTTP_GET_PROVISIONING_REQUEST,
    QUEUE_PROVISIONING_REQUEST,
    TIMER_HEALTH_SWEEP,
    HTTP_PREFLIGHT,
    HTTP_LIST_INSTANCES,
    HTTP_GET_INSTANCE,
    HTTP_INSTANCE_ACTION,
    HTTP_FLEET_ACTION,
    HTTP_GET_FLEET_ACTION,
    HTTP_TEARDOWN_INSTANCE,
    HTTP_PLAN,
    HTTP_ADOPT_INSTANCE,
    HTTP_SCHEMA_DIFF,
    HTTP_SCHEMA_APPLY,
    HTTP_INSTANCE_DRIFT,
    HTTP_ENFORCE_INSTANCE_DRIFT,
    HTTP_ENFORCE_DRIFT,
    HTTP_GET_DRIFT_ENFORCE,
    HTTP_START_ROLLOUT,
    HTTP_GET_ROLLOUT,
    HTTP_ROLLOUT_ACTION,
    HTTP_START_ROTATION,
    HTTP_GET_ROTATION,
    HTTP_CREDENTIAL_CALENDAR,
    EVENTGRID_KEY_VAULT_SECRET,
)

# Storage queues
QUEUE_PROVISIONING_REQUESTS = "provisioning-requests"
QUEUE_PROVISIONING_REQUESTS_REJECTED = "provisioning-requests-rejected"

ALL_FUNCTIONS = ORCHESTRATORS + ACTIVITIES + TRIGGERS
