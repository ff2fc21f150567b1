"""Answer the flow's polls (status) and the final read (results) from the tracker row alone."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

from holdline.config import Settings
from holdline.dal import tracker_table
from holdline.errors import describe_failure
from holdline.observability import logger
from holdline.workflows import get_workflow

FINAL = frozenset({"SUCCEEDED", "FAILED"})


def _not_found() -> dict[str, Any]:
    return {"status": "NOT_FOUND", "keepWaiting": False, "errorCode": "NOT_FOUND"}


def _read(tracker_id: object, now: float) -> dict[str, Any] | None:
    if not isinstance(tracker_id, str) or not tracker_id or len(tracker_id) > 80:
        return None
    logger.append_keys(trackerId=tracker_id)
    return tracker_table.get(tracker_id, now=now)


def status(tracker_id: object, settings: Settings, *, now: float | None = None) -> dict[str, Any]:
    now = time.time() if now is None else now
    row = _read(tracker_id, now)
    if row is None:
        return _not_found()
    elapsed = max(0, int(now - int(row.get("createdAt", now))))
    state = str(row["status"])
    workflow = get_workflow(str(row.get("operation", "")))
    step = str(row.get("step", ""))
    expected = workflow.steps.get(step, settings.poll_seconds) if workflow else settings.poll_seconds
    answer: dict[str, Any] = {
        "status": state,
        "step": step,
        "stepsDone": int(row.get("stepsDone", 0)),
        "stepsTotal": int(row.get("stepsTotal", 0)),
        "keepWaiting": state not in FINAL,
        "nextPollSeconds": max(1, min(expected, settings.poll_seconds * 3)),
        "elapsedSeconds": elapsed,
    }
    if answer["keepWaiting"] and elapsed > settings.max_hold_seconds:
        # Loop guard: the caller has held long enough; the flow offers a callback instead of another prompt.
        answer["keepWaiting"] = False
        answer["holdExceeded"] = True
    return answer


def results(tracker_id: object, settings: Settings, *, now: float | None = None) -> dict[str, Any]:
    now = time.time() if now is None else now
    row = _read(tracker_id, now)
    if row is None:
        return _not_found()
    state = str(row["status"])
    if state not in FINAL:
        return {"status": state, "keepWaiting": True}
    if state == "SUCCEEDED":
        workflow = get_workflow(str(row.get("operation", "")))
        request = row.get("request", {})
        answer: dict[str, Any] = {"status": state}
        for name in workflow.success_fields if workflow else ():
            value = row.get(name, request.get(name))
            answer[name] = str(value) if isinstance(value, Decimal | int) else value
        return answer
    code, message = describe_failure(row.get("failureError"))
    return {
        "status": state,
        "errorCode": code,
        "errorMessage": message,
        "refunded": bool(row.get("refunded")),
    }
