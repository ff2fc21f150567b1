"""Answer the flow's polls (status) and the final read (results) from the tracker row alone.

One exception to "the row alone": a row still at step STARTED past ``not_started_grace_seconds`` (every
starter run that could start its execution is over: both starter attempts wrote the row and failed at
StartExecution). Status and the outcome waiter then start the execution themselves, with the starter's own
name and input (:func:`holdline.dal.executions.start_for_tracker`): for a Standard workflow that is a no-op
if it exists (open: the original answer; closed: ``ExecutionAlreadyExists``), and otherwise the transfer the
caller asked for and is holding for begins. If it cannot be started either, the row ends FAILED with
``ExecutionNotStarted`` (only while it is still at STARTED), so the caller hears at once that it failed and
nothing moved (results answers ``EXECUTION_NOT_STARTED``, refunded=false), the notifier announces it, and
an execution whose start did land unheard fails at its first tracker write (``#status = :running``) before
any money moves. Starting rather than only answering "not started": the request was validated and its row
written; the caller is still on hold for it; and a start is what the starter's own retry would have done.
StartExecution rather than DescribeExecution to find out: its quota (bucket 1300, refill 300/s) is twenty
times DescribeExecution's (15/s), it answers and repairs in one call, and only rows old enough and still at
STARTED pay for it (never a poll of a normal row). Step Functions API reference, StartExecution:
https://docs.aws.amazon.com/step-functions/latest/apireference/API_StartExecution.html ("If StartExecution is
called with the same name and input as a running execution, the call succeeds and return the same response
as the original request"); quotas: https://docs.aws.amazon.com/step-functions/latest/dg/service-quotas.html
"""

from __future__ import annotations

import math
import re
import time
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeGuard

from holdline.config import Settings
from holdline.dal import executions, tracker_table
from holdline.errors import OutcomeUnconfirmed, describe_failure
from holdline.models.tracker import FINAL_STATUSES, TrackerStatus, TrackerStep
from holdline.observability import logger
from holdline.workflows import DEFAULT_OPERATION, Workflow, get_workflow

FINAL = FINAL_STATUSES
_TRACKER_ID = re.compile(r"[A-Za-z0-9_-]{1,80}", re.ASCII)
#: The failureError of a row whose execution could not be started (the sweeper records the same).
NOT_STARTED_ERROR = "ExecutionNotStarted"
#: The results answer's status (and errorCode) for a transfer whose outcome at the bank could not be established.
UNCONFIRMED = "UNCONFIRMED"


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


def awaits_its_start(row: dict[str, Any], settings: Settings, now: float) -> bool:
    """A RUNNING row still at STARTED past the grace: no starter run can still start its execution (see the
    module's docstring). Only such rows cost a Step Functions call."""
    if row.get("status") != TrackerStatus.RUNNING or row.get("step") != TrackerStep.STARTED:
        return False
    return now - int(row.get("createdAt", now)) >= settings.not_started_grace_seconds


def start_unstarted(tracker_id: str, row: dict[str, Any], settings: Settings, *, source: str) -> dict[str, Any]:
    """Start the execution of a row :func:`awaits_its_start` (idempotent), else end the row as not started.
    Returns the row to answer from: unchanged when the execution runs (or ran), FAILED when it cannot start."""
    operation = str(row.get("operation") or DEFAULT_OPERATION)
    workflow = get_workflow(operation)
    machine = workflow.state_machine_arn(settings) if workflow is not None else ""
    try:
        if workflow is None or not machine:
            raise LookupError(f"no state machine for {operation!r} in this function's settings")
        executions.start_for_tracker(machine, tracker_id, workflow.operation)
    except Exception as exc:
        logger.warning("the execution could not be started: the request ends as not started", extra={"error": str(exc)})
        if tracker_table.mark_failed(tracker_id, NOT_STARTED_ERROR, source, only_at_step=TrackerStep.STARTED):
            return {
                **row,
                "status": TrackerStatus.FAILED.value,
                "step": TrackerStep.DONE.value,
                "failureError": NOT_STARTED_ERROR,
                "failureSource": source,
            }
        # Another writer came first (the execution recorded a step, or another poll ended it): the row says what.
        return tracker_table.get(tracker_id) or row
    logger.info("started the execution of a row left at STARTED", extra={"operation": workflow.operation})
    return row


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
    if row is not None and awaits_its_start(row, settings, now):
        row = start_unstarted(str(tracker_id), row, settings, source="STATUS")
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
    if code == OutcomeUnconfirmed.code:
        # Not "failed": what happened at the bank is not known (the row is FAILED only because it is final and
        # not a success). The flow tells the caller not to repeat it; an agent has a task with the ledger facts.
        state = UNCONFIRMED
    logger.info("results answered", extra={"status": state, "errorCode": code})
    return {
        "status": state,
        "errorCode": code,
        "errorMessage": message,
        "refunded": bool(row.get("refunded")),
    }
