"""``POST /_emulator/seed-fleet``: N managed instances at once, readable over Graph as the workflow leaves
them (tagged service principals, one job each in the asked state), and field-level errors for bad input."""

from __future__ import annotations

import pytest

from emulator.testing import AdminError

CUSTOM_TEMPLATE = "8adf8e6e-67b2-4cf2-a259-e3dc5476c621"


def test_a_seeded_fleet_lists_by_tag_and_its_jobs_have_the_dealt_states(emulator_env, graph):
    admin = emulator_env.admin
    created = admin.seed_fleet(8, "fleet-test", CUSTOM_TEMPLATE, prefix="Seeded", returnIds=True,
                               states={"steady": 2, "quarantined": 1, "notStarted": 0, "missingJob": 1},
                               labels={"team": "a"})
    assert created["created"] == 8 and len(created["servicePrincipalIds"]) == 8
    listed = graph.all_pages("/servicePrincipals", **{"$filter": "tags/any(t:t eq 'fleet-test')", "$select": "id,tags",
                                                      "$top": "3"})
    assert {sp["id"] for sp in listed} == set(created["servicePrincipalIds"])
    assert all("fleet-test:label:team=a" in sp["tags"] for sp in listed)
    codes = []
    for sp_id in created["servicePrincipalIds"]:
        jobs = graph.all_pages(f"/servicePrincipals/{sp_id}/synchronization/jobs")
        codes.append(jobs[0]["status"]["code"] if jobs else None)
    # dealt round-robin by weight: steady, steady, quarantined, no job, ...
    assert codes == ["Active", "Active", "Quarantine", None] * 2


@pytest.mark.parametrize("body, field", [
    ({"count": 0, "tag": "t", "templateId": CUSTOM_TEMPLATE}, "'count'"),
    ({"count": 1, "tag": "", "templateId": CUSTOM_TEMPLATE}, "'tag'"),
    ({"count": 1, "tag": "t", "templateId": "no-such-template"}, "'templateId'"),
    ({"count": 1, "tag": "t", "templateId": CUSTOM_TEMPLATE, "states": {"sleeping": 1}}, "'states'"),
])
def test_bad_fleet_specs_are_refused_naming_the_field(emulator_env, body, field):
    with pytest.raises(AdminError, match=rf"400.*{field}"):
        emulator_env.admin._call("POST", "seed-fleet", json=body)
