"""core.settings: defaults, every problem reported at once, the README table kept in sync."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from core import settings as s
from core.errors import ConfigurationError

README = Path(__file__).resolve().parents[2] / "README.md"
BASE = {"KEY_VAULT_URL": "https://vault.example.net/"}


def test_defaults_and_graph_root():
    cfg = s.Settings.from_env(BASE)
    assert cfg.graph_root == "https://graph.microsoft.com/v1.0"
    assert cfg.key_vault_url == "https://vault.example.net"
    assert cfg.request_max_instances == 10000
    assert cfg.batch_max_in_flight == 20
    assert cfg.health_sweep_schedule == "0 0 * * * *"
    assert cfg.key_vault_verify_challenge_resource is True
    assert cfg.azure_disable_instance_discovery is False
    # quarantined jobs are only reported unless a setting enables the restart
    assert cfg.health_sweep_restart_credential_quarantine is False


def test_values_are_parsed():
    cfg = s.Settings.from_env({**BASE, "GRAPH_API_VERSION": "beta", "AZURE_DISABLE_INSTANCE_DISCOVERY": "TRUE",
                               "KEY_VAULT_VERIFY_CHALLENGE_RESOURCE": "0", "GRAPH_READ_TIMEOUT_SECONDS": "2.5",
                               "HEALTH_SWEEP_SCHEDULE": "0  */5 * * * *", "GRAPH_BASE_URL": "https://127.0.0.1:8443/"})
    assert cfg.graph_root == "https://127.0.0.1:8443/beta"
    assert cfg.azure_disable_instance_discovery is True
    assert cfg.key_vault_verify_challenge_resource is False
    assert cfg.graph_read_timeout_seconds == 2.5
    assert cfg.health_sweep_schedule == "0 */5 * * * *"


def test_role_import_templates_are_a_list_of_guids():
    # default: AWS Single-Account Access, whose job only imports AWS roles
    assert s.Settings.from_env(BASE).role_import_templates == {"8b1025e4-1dd2-430b-a150-2ef79cd700f5"}
    cfg = s.Settings.from_env({**BASE, "ROLE_IMPORT_TEMPLATE_IDS": " 8B1025E4-1DD2-430B-A150-2EF79CD700F5 ,"
                                                                   "21ed01d2-ec13-4e9e-86c1-cd546719ebc4,"})
    assert cfg.role_import_templates == {"8b1025e4-1dd2-430b-a150-2ef79cd700f5", "21ed01d2-ec13-4e9e-86c1-cd546719ebc4"}
    assert s.Settings.from_env({**BASE, "ROLE_IMPORT_TEMPLATE_IDS": "none"}).role_import_templates == frozenset()
    with pytest.raises(ConfigurationError) as caught:
        s.Settings.from_env({**BASE, "ROLE_IMPORT_TEMPLATE_IDS": "AWS Single-Account Access"})
    assert [p.path for p in caught.value.problems] == ["ROLE_IMPORT_TEMPLATE_IDS"]


def test_every_problem_is_reported_together_without_echoing_values():
    with pytest.raises(ConfigurationError) as caught:
        s.Settings.from_env({"GRAPH_API_VERSION": "v2", "GRAPH_MAX_ATTEMPTS": "zero-secret-ish",
                             "GRAPH_BASE_URL": "http://graph", "AZURE_DISABLE_INSTANCE_DISCOVERY": "maybe",
                             "HEALTH_SWEEP_SCHEDULE": "@hourly", "PROVISIONING_CORRELATION_TAG": "bad tag!",
                             "VISIBILITY_WAIT_SECONDS": "-1", "PROVISIONING_LOG_PAGE_SIZE": "5000",
                             "MONITOR_FIRST_POLL_SECONDS": "900"})
    named = {p.path for p in caught.value.problems}
    assert named == {"KEY_VAULT_URL", "GRAPH_API_VERSION", "GRAPH_MAX_ATTEMPTS", "GRAPH_BASE_URL",
                     "AZURE_DISABLE_INSTANCE_DISCOVERY", "HEALTH_SWEEP_SCHEDULE", "PROVISIONING_CORRELATION_TAG",
                     "VISIBILITY_WAIT_SECONDS", "PROVISIONING_LOG_PAGE_SIZE", "MONITOR_FIRST_POLL_SECONDS"}
    assert "zero-secret-ish" not in str(caught.value)
    assert caught.value.kind == "permanent"


@pytest.mark.parametrize("name, value", [("HEALTH_SWEEP_PAGE_SIZE", "1000"), ("HEALTH_SWEEP_PAGE_SIZE", "0"),
                                         ("HEALTH_SWEEP_REPORT_CONTAINER", "Reports"),
                                         ("HEALTH_SWEEP_REPORT_CONTAINER", "ab"),
                                         ("HEALTH_SWEEP_REPORT_CONTAINER", "sweep--reports")])
def test_sweep_page_size_and_report_container_are_checked(name, value):
    with pytest.raises(ConfigurationError) as caught:
        s.Settings.from_env({"KEY_VAULT_URL": "https://vault.example", name: value})
    assert [p.path for p in caught.value.problems] == [name]


def test_the_default_report_container_is_a_valid_name():
    assert s.Settings.from_env({"KEY_VAULT_URL": "https://vault.example"}).health_sweep_report_container == \
        "health-sweep-reports"


@pytest.mark.parametrize("text", ["nan", "NaN", "inf", "-inf", "1e999"])
def test_numbers_that_are_not_finite_are_refused(text):
    """nan compares False to everything: a nan wait would make every bounded wait endless."""
    float_settings = [row.name for row in s.SETTINGS if row.type == "float"]
    assert "VISIBILITY_WAIT_SECONDS" in float_settings
    with pytest.raises(ConfigurationError) as caught:
        s.Settings.from_env({**BASE, **{name: text for name in float_settings}})
    assert {p.path for p in caught.value.problems} == set(float_settings)
    assert all("finite" in p.message for p in caught.value.problems)


def test_base_url_with_a_version_is_refused():
    with pytest.raises(ConfigurationError) as caught:
        s.Settings.from_env({**BASE, "GRAPH_BASE_URL": "https://graph.microsoft.com/v1.0/"})
    assert [p.path for p in caught.value.problems] == ["GRAPH_BASE_URL"]


def test_overrides_and_cached_reader(monkeypatch):
    assert s.Settings.from_env(BASE, visibility_wait_seconds=1.0).visibility_wait_seconds == 1.0
    monkeypatch.setenv("KEY_VAULT_URL", "https://a.vault.azure.net")
    s.get_settings.cache_clear()
    try:
        first = s.get_settings()
        monkeypatch.setenv("KEY_VAULT_URL", "https://b.vault.azure.net")
        assert s.get_settings() is first  # read once per process
    finally:
        s.get_settings.cache_clear()


def test_table_rows_are_complete():
    names = [row.name for row in s.SETTINGS]
    assert len(names) == len(set(names))
    for row in s.SETTINGS:
        assert re.fullmatch(r"[A-Z][A-Z0-9_]+", row.name)
        assert row.description.endswith(".")
    for required in ("GRAPH_BASE_URL", "GRAPH_API_VERSION", "GRAPH_SCOPE", "KEY_VAULT_URL",
                     "KEY_VAULT_VERIFY_CHALLENGE_RESOURCE", "AZURE_DISABLE_INSTANCE_DISCOVERY",
                     "PROVISIONING_CORRELATION_TAG"):
        assert required in names


def _readme_rows() -> dict[str, list[str]]:
    text = README.read_text(encoding="utf-8")
    block = text.split("<!-- settings:begin -->", 1)[1].split("<!-- settings:end -->", 1)[0]
    rows = {}
    for line in block.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 4 and cells[0].startswith("`"):
            rows[cells[0].strip("`")] = cells
    return rows


def test_readme_table_matches_settings():
    rows = _readme_rows()
    assert list(rows) == [row.name for row in s.SETTINGS]
    for row in s.SETTINGS:
        cells = rows[row.name]
        expected_default = "**required**" if row.required else f"`{row.default_text()}`"
        assert cells[1] == expected_default, row.name
        assert cells[2] == row.type, row.name
    assert s.markdown_table() in README.read_text(encoding="utf-8")
