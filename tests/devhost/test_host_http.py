"""HTTP triggers through a devhost subprocess: routes, methods, parameters, auth levels, errors,
request limits, and local.settings.json / environment precedence."""

from __future__ import annotations

import requests
import pytest

pytestmark = pytest.mark.timeout(120)


def test_route_params_query_body_headers_and_response_mapping(basic_host):
    r = basic_host.post("/api/echo/42/bob?x=1&y=two", data=b"hello", headers={"x-test": "t1"})
    assert r.status_code == 201
    assert r.headers["x-echo"] == "yes"
    assert r.headers["Content-Type"] == "application/json"
    body = r.json()
    assert body["method"] == "POST"
    assert body["route"] == {"id": "42", "name": "bob"}
    assert body["params"] == {"x": "1", "y": "two"}
    assert body["body"] == "hello"
    assert body["header"] == "t1"
    assert body["url"].startswith(basic_host.base_url + "/api/echo/42/bob?")


def test_optional_route_parameter_and_int_constraint(basic_host):
    r = basic_host.get("/api/echo/7")
    assert r.status_code == 201
    assert r.json()["route"] == {"id": "7"}
    # {id:int} does not match a word, so no function matches: 404 like the host
    assert basic_host.get("/api/echo/seven").status_code == 404


def test_method_not_allowed_is_404_and_unknown_route_is_404(basic_host):
    assert basic_host.request("PUT", "/api/echo/1").status_code == 404
    assert basic_host.get("/api/no/such/route").status_code == 404


def test_literal_route_wins_over_parameter(basic_host):
    assert basic_host.get("/api/items/special", key=False).text == "special"
    assert basic_host.get("/api/items/12", key=False).text == "item 12"


def test_function_level_needs_a_key(basic_host):
    assert basic_host.get("/api/echo/1", key=False).status_code == 401
    assert basic_host.get("/api/echo/1", headers={"x-functions-key": "wrong"}).status_code == 401
    assert requests.get(basic_host.url("/api/echo/1?code=wrong"), timeout=10).status_code == 401
    assert requests.get(basic_host.url(f"/api/echo/1?code={basic_host.function_key}"), timeout=10).status_code == 201
    assert basic_host.get("/api/echo/1").status_code == 201  # header x-functions-key
    # the master key also opens function-level routes
    assert basic_host.get("/api/echo/1", headers={"x-functions-key": basic_host.master_key}).status_code == 201


def test_anonymous_is_open_and_str_return_is_text(basic_host):
    r = requests.get(basic_host.url("/api/open?who=me"), timeout=10)
    assert r.status_code == 200
    assert r.text == "open me"
    assert r.headers["Content-Type"].startswith("text/plain")


def test_admin_level_needs_the_master_key(basic_host):
    assert basic_host.get("/api/admin-only").status_code == 401  # function key is not enough
    r = basic_host.get("/api/admin-only", headers={"x-functions-key": basic_host.master_key})
    assert r.status_code == 200 and r.text == "admin ok"


def test_function_exception_is_500_without_details(basic_host):
    r = basic_host.get("/api/boom")
    assert r.status_code == 500
    assert r.content == b""
    assert "secret-detail-should-not-leak" in basic_host.log_text()  # logged, not returned


def test_request_body_limit(basic_host):
    # FUNCTIONS_REQUEST_BODY_SIZE_LIMIT=65536 in the fixture's environment
    assert basic_host.post("/api/echo/1", data=b"x" * 70000).status_code == 413
    assert basic_host.post("/api/echo/1", data=b"x" * 60000).status_code == 201


def test_environment_wins_over_local_settings(basic_host):
    assert basic_host.get("/api/settings/HOST_TEST_OVERRIDDEN").json() == {"value": "from-env"}
    assert basic_host.get("/api/settings/HOST_TEST_FROM_SETTINGS").json() == {"value": "from-settings"}


def test_admin_routes(basic_host):
    assert requests.get(basic_host.url("/admin/host/ping"), timeout=10).status_code == 200
    assert basic_host.get("/admin/host/status").status_code == 401
    r = basic_host.get("/admin/functions", headers={"x-functions-key": basic_host.master_key})
    names = {f["name"]: f for f in r.json()}
    assert names["echo"]["url"] == basic_host.base_url + "/api/echo/{id:int}/{name?}"
    assert names["on_message"]["trigger"] == "queueTrigger"


def test_keys_are_kept_in_the_state_folder(basic_host):
    import json
    import os

    keys = json.load(open(os.path.join(basic_host.state_dir, "keys.json")))
    assert keys["functionKey"] == basic_host.function_key
    assert basic_host.function_key in basic_host.log_text()  # printed at start


def test_route_from_an_app_setting(basic_host):
    assert basic_host.get("/api/named/configured", key=False).text == "route from a setting"
    assert basic_host.get("/api/named/%HOST_TEST_ROUTE_NAME%", key=False).status_code == 404


@pytest.mark.timeout(60)
def test_missing_storage_connection_stops_startup_clearly(tmp_path):
    from devhost.testing import DevhostStartError, start_devhost
    from host_support import host_basic_app

    with pytest.raises(DevhostStartError) as err:
        start_devhost(host_basic_app(tmp_path), tmp_path / "state", env={"AzureWebJobsStorage": None})
    text = str(err.value)
    assert "storage connection 'AzureWebJobsStorage' is not configured" in text
    assert "function 'on_message'" in text and "Traceback" not in text


@pytest.mark.timeout(60)
def test_host_json_function_timeout_route_prefix_and_log_level(tmp_path):
    from devhost.testing import start_devhost
    from host_support import APPS, wait_until

    host = start_devhost(APPS / "host_options" / "function_app.py", tmp_path / "state")
    try:
        assert host.get("/fast").text == "fast"  # routePrefix "" serves at the root
        assert host.get("/api/fast").status_code == 404
        r = host.get("/slow")  # functionTimeout 1 s
        assert r.status_code == 500 and r.content == b""
        logs = host.log_text()
        assert "timed out after 1.0s (functionTimeout)" in logs
        assert "Timeout value of 00:00:01 was exceeded by function: Functions.slow" in logs  # the host's words
        # timer functions are bounded too (run_on_startup started one at start)
        assert wait_until(lambda: "Timeout value of 00:00:01 was exceeded by function: Functions.slow_timer"
                          in host.log_text(), timeout=30, what="the timer function's timeout")
        assert "warning line from fast" in logs and "info line from fast" not in logs  # logLevel.default Warning
    finally:
        host.stop()
