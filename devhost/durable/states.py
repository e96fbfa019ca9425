"""Runtime-status sets of orchestration instances (the ``runtimeStatus`` values the extension reports)."""

TERMINAL_STATES = frozenset({"Completed", "Failed", "Terminated", "Canceled"})
RUNNING_STATES = frozenset({"Pending", "Running", "Suspended", "ContinuedAsNew"})
