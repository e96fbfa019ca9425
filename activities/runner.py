"""The activity contract (docs/architecture.md section 3), applied to every activity in one place.

Success returns ``{"ok": true, ...}``; a permanent failure or a throttle beyond the in-call budget
is *returned* as ``{"ok": false, "error": {"kind", "code", "message", "step", "retryAfterSeconds"?}}``
(the JSON of ``core.contracts.StepError``); a transient failure is *raised* as
:class:`core.errors.TransientError` so ``call_activity_with_retry`` retries it. Inputs and outputs
hold no secret values: credentials travel as Key Vault references.
"""

from __future__ import annotations

import dataclasses
import logging
import traceback
from pathlib import Path
from typing import Any, Callable

from core import errors, steps

logger = logging.getLogger("activities")

#: an activity body: the input JSON and a step context -> the result fields (a plain function, tests call it)
Body = Callable[[dict[str, Any], steps.StepContext], dict[str, Any]]


def run(step: str, payload: Any, body: Body, context: steps.StepContext | None = None) -> dict[str, Any]:
    """Run one step under the activity contract; raise only TransientError."""
    try:
        payload = {} if payload is None else payload
        if not isinstance(payload, dict):
            raise errors.InvalidRequest([errors.Problem("$", "activity input must be a JSON object")])
        ctx = context or steps.default_context()
        if isinstance(ctx, steps.StepContext):  # the step's permissions tell a refusal from lag
            ctx = dataclasses.replace(ctx, step=step)
        result = body(payload, ctx)
        return {"ok": True, **result}
    except errors.ThrottledError as exc:
        logger.warning("%s throttled: retry after %.1f s", step, exc.retry_after)
        return {"ok": False, "error": exc.to_dict(step)}
    except errors.TransientError as exc:
        logger.warning("%s transient failure: %s", step, exc)
        raise
    except errors.PermissionDenied as exc:  # 401 or 403, whatever Graph's code: name the permissions
        denied = exc.for_step(step)
        logger.error("%s refused: %s", step, denied)
        return {"ok": False, "error": denied.to_dict(step)}
    except errors.PermanentError as exc:
        logger.error("%s failed permanently: %s", step, exc)
        return {"ok": False, "error": exc.to_dict(step)}
    except Exception as exc:  # a bug or an unexpected SDK error: retry, but never echo its text
        # The exception's text may quote a request or response body, so only where it happened is logged.
        where = " <- ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}"
                            for f in reversed(traceback.extract_tb(exc.__traceback__)[-4:]))
        logger.error("%s: unexpected %s at %s", step, type(exc).__name__, where)
        raise errors.TransientError(f"{step}: unexpected {type(exc).__name__}", code="UnexpectedError") from None
