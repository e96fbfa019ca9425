"""The inventory's last batch and last action (core/fleet.py, core/registry.py): which outcomes of a report part
become ``lastBatch`` rows, that the registry writes them in table transactions of at most 100 rows, and that a
storage failure is logged and never raised (the registry is a cache). End to end, against Azurite and
devhost: tests/workflow/test_fleet_operations.py."""

from __future__ import annotations

import json
import logging

from core import fleet
from core.registry import TRANSACTION_MAX, FleetRegistry, _decode


class _Table:
    def __init__(self, fail: bool = False) -> None:
        self.transactions: list[list] = []
        self.fail = fail

    def create_table(self) -> None:
        pass

    def submit_transaction(self, operations: list) -> None:
        if self.fail:
            raise OSError("storage down")
        self.transactions.append(operations)

    def upsert_entity(self, entity: dict, mode=None) -> None:
        if self.fail:
            raise OSError("storage down")
        self.transactions.append([("upsert", entity, {"mode": mode})])

    def get_entity(self, partition: str, row: str) -> dict:
        raise OSError("storage down")


def _outcome(sp_id: str | None, outcome: str, finished: str = "2026-12-01T10:00:00Z") -> dict:
    return {"instanceKey": f"k-{sp_id}", "outcome": outcome, "ids": {"servicePrincipalId": sp_id} if sp_id else {},
            "timings": {"finishedAt": finished}}


def test_a_report_part_gives_each_finished_instance_its_last_batch():
    part = {"batchId": "batch-7", "index": 0, "instances": [
        _outcome("sp1", "steadyState"), _outcome("sp2", "quarantined"), _outcome(None, "failed"),
        _outcome("sp3", "configured"), "not an outcome"]}
    assert fleet.batch_part_rows(part) == {
        "sp1": {"lastBatch": {"batchId": "batch-7", "outcome": "steadyState", "at": "2026-12-01T10:00:00Z"}},
        "sp2": {"lastBatch": {"batchId": "batch-7", "outcome": "quarantined", "at": "2026-12-01T10:00:00Z"}}}
    assert fleet.batch_part_rows({"instances": "none"}) == {} and fleet.batch_part_rows(None) == {}


def test_rows_are_written_in_transactions_of_at_most_one_hundred_and_read_back_decoded():
    table = _Table()
    part = {"batchId": "b", "index": 3, "instances": [_outcome(f"sp{n:03d}", "steadyState") for n in range(250)]}
    assert fleet.record_batch_part(part, FleetRegistry(table)) == 250
    assert [len(t) for t in table.transactions] == [TRANSACTION_MAX, TRANSACTION_MAX, 50]
    entity = table.transactions[0][0][1]
    assert entity["PartitionKey"] == "instance" and entity["RowKey"] == "sp000"
    assert json.loads(entity["lastBatch"]) == {"batchId": "b", "outcome": "steadyState", "at": "2026-12-01T10:00:00Z"}
    assert _decode(entity)["lastBatch"]["batchId"] == "b"


def test_storage_failures_are_logged_never_raised(caplog):
    broken = FleetRegistry(_Table(fail=True))
    with caplog.at_level(logging.WARNING, logger="core.fleet"):
        assert fleet.record_batch_part({"batchId": "b", "index": 0, "instances": [_outcome("sp1", "failed")]},
                                       broken) == 0
        assert fleet.record_action("fleet-action:x", {"servicePrincipalId": "sp1", "action": "pause",
                                                      "outcome": "done"}, "2026-12-01T10:00:00Z", broken) is False
        assert fleet.registry_rows(["sp1"], broken) == {}
    assert "OSError" in caplog.text and "storage down" not in caplog.text  # the type only, never the text


def test_an_action_result_is_recorded_and_the_inventory_shows_nulls_without_a_row():
    table = _Table()
    assert fleet.record_action("fleet-action:pause:1", {"servicePrincipalId": "sp1", "action": "pause",
                                                        "outcome": "done", "detail": "paused"},
                               "2026-12-01T10:00:00Z", FleetRegistry(table)) is True
    written = json.loads(table.transactions[0][0][1]["lastAction"])
    assert written == {"actionId": "fleet-action:pause:1", "action": "pause", "outcome": "done",
                       "at": "2026-12-01T10:00:00Z"}
    assert fleet.record_action(None, {"servicePrincipalId": "sp1", "outcome": "done"}, "t", FleetRegistry(table)) is False
    shown = fleet.with_history([{"servicePrincipalId": "sp1"}, {"servicePrincipalId": "sp2"}],
                               {"sp1": {"lastAction": written}})
    assert shown == [{"servicePrincipalId": "sp1", "lastBatch": None, "lastAction": written, "lastSweepResult": None},
                     {"servicePrincipalId": "sp2", "lastBatch": None, "lastAction": None, "lastSweepResult": None}]


def test_the_inventory_shows_the_last_sweep_classification():
    """found in review: issue #13's inventory lists the last sweep classification; the registry holds it
    (``lastSweepResult``, written by each sweep) but the inventory showed only lastBatch and lastAction."""
    last = {"runId": "health-sweep@2026-12-01T10:00:00Z", "sweptAt": "2026-12-01T10:00:00Z", "category": "quarantined",
            "reason": "EncounteredQuarantineException", "previous": "healthy"}
    shown = fleet.with_history([{"servicePrincipalId": "sp1"}, {"servicePrincipalId": "sp2"}],
                               {"sp1": {"lastSweepResult": last}})
    assert [i["lastSweepResult"] for i in shown] == [last, None]
