"""Small JSON response helpers shared by the HTTP triggers (one error shape everywhere)."""

from __future__ import annotations

import json
from typing import Any

import azure.functions as func


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> func.HttpResponse:
    """A JSON response; never echoes request data the caller did not expect back."""
    return func.HttpResponse(json.dumps(body, indent=1, sort_keys=False), status_code=status,
                             mimetype="application/json", headers=headers or {})


def error_response(status: int, code: str, message: str, details: list[dict] | None = None) -> func.HttpResponse:
    """``{"error": {"code", "message", "details": [{"path", "message"}...]}}`` (OData-like, as Graph does)."""
    error: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        error["details"] = details
    return json_response({"error": error}, status)


def invalid_json_response(exc: Exception) -> func.HttpResponse:
    """The 400 for a body that is not UTF-8 JSON (``triggers.submission.BodyNotJson``), naming the body (``$``)."""
    return error_response(400, "InvalidJson", "the body is not valid UTF-8 JSON", [{"path": "$", "message": str(exc)}])
