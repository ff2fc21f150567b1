"""Answer the flow's polls (status) and the final read (results) from the tracker row alone."""

from __future__ import annotations

import math
import re
import time
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeGuard

from holdline.config import Settings
from holdline.dal import tracker_table
from holdline.errors import describe_failure
from holdline.models.tracker import FINAL_STATUSES, TrackerStatus
from holdline.observability import logger
from holdline.workflows import Workflow, get_workflow

FINAL = FINAL_STATUSES
_TRACKER_ID = re.compile(r"[A-Za-z0-9_-]{1,80}", re.ASCII)


def _not_found() -> dict[str, Any]:
    return {"status": "NOT_FOUND", "keepWaiting": False, "errorCode": "NOT_FOUND"}


def is_tracker_id(value: object) -> TypeGuard[str]:
    """Tracker ids are execution names we made ([a-z0-9-], 80 at most): anything else is not one of ours."""
    return isinstance(value, str) and bool(_TRACKER_ID.fullmatch(value))


def read_row(tracker_id: object, now: float) -> dict[str, Any] | None:
    # Not one of our ids: no such row, and it costs no read.
    if not is_tracker_id(tracker_id):
        return None
    # The execution is named after the tracker: both ids correlate the flow's logs with the saga's.
    logger.append_keys(trackerId=tracker_id, executionName=tracker_id)
    return tracker_table.get(tracker_id, now=now)


def _timestamp(value: object) -> float | None:
    """``updatedAt`` is the state's EnteredTime (ISO 8601) as the state machine wrote it."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None


def next_poll_seconds(row: dict[str, Any], workflow: Workflow | None, settings: Settings, now: float) -> int:
    """How long the flow should hold before the next poll: what is left of the current step's usual
    duration, never below ``PollSeconds`` (the shortest hold) nor above three times it (the caller should
    hear progress). A step we know nothing about (just started, refunding) is polled at ``PollSeconds``."""
    floor, ceiling = settings.poll_seconds, settings.poll_seconds * 3
    expected = workflow.expected_seconds(str(row.get("step", ""))) if workflow else None
    if expected is None:
        return floor
    entered = _timestamp(row.get("updatedAt"))
    spent = max(0.0, now - entered) if entered is not None else 0.0
    return int(min(ceiling, max(floor, math.ceil(expected - spent))))


def status(tracker_id: object, settings: Settings, *, now: float | None = None) -> dict[str, Any]:
    """The status answer for one tracker (one consistent GetItem), naming the tracker when it exists: the flow's
    lookup asks by contact and request (the handler derives the id) and holds for the tracker it hears."""
    now = time.time() if now is None else now
    row = read_row(tracker_id, now)
    answer = status_answer(row, settings, now)
    if row is not None:
        answer["trackerId"] = str(tracker_id)
    facts = ("status", "step", "keepWaiting", "elapsedSeconds")
    logger.info("status answered", extra={k: answer.get(k) for k in facts})
    return answer


def status_answer(row: dict[str, Any] | None, settings: Settings, now: float) -> dict[str, Any]:
    """The status answer for a tracker row (None: no such row, or expired). Shared by the status function's
    one read and the outcome waiter's repeated reads."""
    if row is None:
        return _not_found()
    elapsed = max(0, int(now - int(row.get("createdAt", now))))
    state = str(row["status"])
    workflow = get_workflow(str(row.get("operation", "")))
    answer: dict[str, Any] = {
        "status": state,
        "step": str(row.get("step", "")),
        "stepsDone": int(row.get("stepsDone", 0)),
        "stepsTotal": int(row.get("stepsTotal", 0)),
        "keepWaiting": state not in FINAL,
        "nextPollSeconds": 0,
        "elapsedSeconds": elapsed,
    }
    if answer["keepWaiting"] and elapsed > settings.max_hold_seconds:
        # Loop guard: the caller has held long enough; the flow offers a callback instead of another prompt.
        answer["keepWaiting"] = False
        answer["holdExceeded"] = True
    if answer["keepWaiting"]:
        answer["nextPollSeconds"] = next_poll_seconds(row, workflow, settings, now)
    return answer


def results(tracker_id: object, settings: Settings, *, now: float | None = None) -> dict[str, Any]:
    now = time.time() if now is None else now
    row = read_row(tracker_id, now)
    if row is None:
        return _not_found()
    state = str(row["status"])
    if state not in FINAL:
        return {"status": state, "keepWaiting": True}
    if state == TrackerStatus.SUCCEEDED:
        workflow = get_workflow(str(row.get("operation", "")))
        request = row.get("request", {})
        answer: dict[str, Any] = {"status": state}
        for name in workflow.success_fields if workflow else ():
            value = row.get(name, request.get(name))
            answer[name] = str(value) if isinstance(value, Decimal | int) else value
        logger.info("results answered", extra={"status": state})
        return answer
    code, message = describe_failure(row.get("failureError"))
    logger.info("results answered", extra={"status": state, "errorCode": code})
    return {
        "status": state,
        "errorCode": code,
        "errorMessage": message,
        "refunded": bool(row.get("refunded")),
    }
