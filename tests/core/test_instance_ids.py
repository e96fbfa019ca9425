"""core.instance_ids: the one place orchestration ids are derived. Running orchestrations and
their callers address each other by these exact strings, so their forms must not change."""

from __future__ import annotations

from core import instance_ids as ids


def test_every_id_form():
    batch = ids.batch_instance_id("req 1/a")
    assert batch == "batch-req_1_a"
    child = ids.child_instance_id(batch, "0a1b")
    assert child == "batch-req_1_a:0a1b" and ids.monitor_instance_id(child) == "batch-req_1_a:0a1b:monitor"
    assert ids.sub_batch_instance_id(batch, 7) == "batch-req_1_a:part-00007"
    assert ids.sub_batch_watch_instance_id(batch, 7) == "batch-req_1_a:part-00007:watch"
    assert ids.rotation_instance_id("KV-Token", "ABCDEF") == "rotation-kv-token-abcdef"
    assert ids.rotation_instance_id("kv-token", "abcdef", dry_run=True) == "rotation-kv-token-abcdef:dryrun"
    assert ids.rollout_instance_id("r1") == "rollout-r1"
    assert ids.action_instance_id("pause", {}, [], "mine") == "fleet-action:mine"


def test_an_action_without_an_id_is_named_by_what_it_does():
    a = [{"servicePrincipalId": "1"}, {"servicePrincipalId": "2"}]
    same = ids.action_instance_id("restart", {"scope": "Full"}, a, None)
    assert same.startswith("fleet-action:restart:") and len(same) == len("fleet-action:restart:") + 24
    assert same == ids.action_instance_id("restart", {"scope": "Full"}, list(reversed(a)), None)
    assert same != ids.action_instance_id("restart", {"scope": "Quick"}, a, None)
