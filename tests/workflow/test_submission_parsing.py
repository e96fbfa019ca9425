"""The request body reader and the validation guard of the provisioning-request triggers
(triggers/submission.py): a body that is not UTF-8 JSON says why without quoting it, a deep nesting is a
request error not a crash, and a request that makes validation itself fail is the request's problem."""

from __future__ import annotations

import pytest

from core.errors import InvalidRequest
from triggers.submission import BodyNotJson, prepare_safely, read_json


def test_json_is_read():
    assert read_json(b'{"requestId": "r-1", "instances": []}') == {"requestId": "r-1", "instances": []}


@pytest.mark.parametrize("raw,says", [
    (b"\xff\xfe{}", "not UTF-8"),
    (b'{"requestId": "secret-ish"', "line 1 column"),
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
])
def test_a_body_that_is_not_json_says_why_without_quoting_it(raw, says):
    with pytest.raises(BodyNotJson) as caught:
        read_json(raw)
    assert says in str(caught.value) and "secret-ish" not in str(caught.value)


class _Limits:
    request_max_instances = 10


class _Broken:
    @property
    def request_max_instances(self) -> int:
        raise KeyError("a bug, not the caller's input")


def test_a_bad_request_keeps_its_field_problems():
    with pytest.raises(InvalidRequest) as caught:
        prepare_safely({"requestId": "r-1", "instances": "many"}, _Limits())  # type: ignore[arg-type]
    assert "instances" in {p.path for p in caught.value.problems}


def test_a_failure_inside_validation_is_a_request_problem_naming_only_its_type():
    with pytest.raises(InvalidRequest) as caught:
        prepare_safely({"requestId": "r-1", "instances": []}, _Broken())  # type: ignore[arg-type]
    (problem,) = caught.value.problems
    assert problem.path == "$" and "KeyError" in problem.message and "a bug" not in problem.message
