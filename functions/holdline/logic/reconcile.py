"""Reconciliation: executions that ended without their saga writing the tracker (killed from outside, timed out,
never started) still end their tracker row.

The reconciler acts on Step Functions' status change events (every workflow's); the sweeper asks
DescribeExecution about rows still RUNNING long after any execution could be (status change events are best
effort). Both only ever move a row RUNNING -> FAILED with a conditional write, so they never race the saga
into two outcomes and a replay changes nothing; the row's change is announced by the notifier
(:mod:`holdline.logic.failure_events`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from holdline.config import Settings
from holdline.dal import executions, tracker_table
from holdline.errors import TrackerNotRecorded
from holdline.models.tracker import TrackerStatus
from holdline.models.unrecorded import UnrecordedOutcome
from holdline.observability import logger
from holdline.workflows import DEFAULT_OPERATION, get_workflow

# Step Functions execution status -> the failureError the tracker records.
EXECUTION_STATUS_ERRORS = {
    "FAILED": "ExecutionFailed",
    "TIMED_OUT": "ExecutionTimedOut",
    "ABORTED": "ExecutionAborted",
}


class SweepIncomplete(Exception):
    """Some rows could not be swept (each was logged). Raised after every other row was: the function's
    error reaches its Errors metric and OnFailure destination, and the next scheduled run tries them again."""


class UnknownStateMachine(Exception):
    """A row's workflow has no state machine ARN in this function's settings (a missing variable)."""


# ---- the reconciler -------------------------------------------------------------------------------------------
def tracker_id_of(detail: Mapping[str, Any]) -> str | None:
    """The tracker id of an execution status change: the input's trackerId, else the execution name (the
    starter names each execution after its tracker)."""
    raw = detail.get("input")
    if isinstance(raw, str):
        try:
            parsed = json.loads(raw)
        except json.JSONDecodeError:
            parsed = None
        if isinstance(parsed, dict) and isinstance(parsed.get("trackerId"), str):
            return str(parsed["trackerId"])
    name = detail.get("name")
    return name if isinstance(name, str) and name else None


def unrecorded_outcome(detail: Mapping[str, Any], tracker_id: str) -> UnrecordedOutcome | None:
    """The outcome a saga could not write (its execution failed with TrackerNotRecorded and the outcome as the
    cause), or None: another failure, or a cause that is not that outcome for this tracker."""
    if detail.get("status") != "FAILED" or detail.get("error") != TrackerNotRecorded.__name__:
        return None
    try:
        outcome = UnrecordedOutcome.model_validate_json(str(detail.get("cause") or ""))
    except ValidationError:
        logger.error("TrackerNotRecorded with a cause that is not an outcome: recorded as ExecutionFailed")
        return None
    return outcome if outcome.tracker_id == tracker_id else None


def reconcile_execution(detail: Mapping[str, Any], source: str = "RECONCILER") -> bool:
    """A "Step Functions Execution Status Change" detail: if the execution ended badly and the tracker is still
    RUNNING, make it FAILED, or write the outcome the saga knew but could not write (TrackerNotRecorded). True if
    this call changed the row."""
    error_name = EXECUTION_STATUS_ERRORS.get(str(detail.get("status")))
    tracker_id = tracker_id_of(detail)
    if error_name is None or tracker_id is None:
        logger.info("nothing to reconcile", extra={"executionStatus": detail.get("status")})
        return False
    logger.append_keys(trackerId=tracker_id)
    outcome = unrecorded_outcome(detail, tracker_id)
    if outcome is not None:
        changed = tracker_table.record_outcome(
            tracker_id,
            status=TrackerStatus(outcome.status),
            source=source,
            failure_error=outcome.failure_error,
            refunded=outcome.refunded,
            confirmation_number=outcome.confirmation_number,
        )
        logger.info("recorded the saga's outcome" if changed else "already final", extra={"outcome": outcome.status})
        return changed
    changed = tracker_table.mark_failed(tracker_id, error_name, source, execution_error=detail.get("error"))
    logger.info("reconciled" if changed else "already final", extra={"executionStatus": detail["status"]})
    return changed


# ---- the sweeper ----------------------------------------------------------------------------------------------
@dataclass
class SweepReport:
    examined: int = 0
    reconciled: int = 0
    still_running: int = 0
    anomalies: int = 0
    failed: int = 0
    truncated: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "examined": self.examined,
            "reconciled": self.reconciled,
            "stillRunning": self.still_running,
            "anomalies": self.anomalies,
            "failed": self.failed,
            "truncated": self.truncated,
        }


def execution_of(row: Mapping[str, Any], settings: Settings) -> str:
    """The ARN of the execution a row's workflow started for it (named after the tracker)."""
    operation = str(row.get("operation") or DEFAULT_OPERATION)  # rows older than the registry are transfers
    workflow = get_workflow(operation)
    if workflow is None:
        raise UnknownStateMachine(f"no workflow {operation!r}")
    machine = workflow.state_machine_arn(settings)
    if not machine:
        raise UnknownStateMachine(f"no state machine ARN for {operation!r} in this function's settings")
    return executions.execution_arn(machine, str(row["trackerId"]))


def sweep(
    settings: Settings,
    *,
    now: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> SweepReport:
    """Find trackers RUNNING past ``sweep_after_seconds`` (longer than any state machine may run), ask Step
    Functions for the truth and reconcile. Bounded: at most ``sweep_max_items`` rows and DescribeExecution
    calls per run, paced at ``sweep_describe_per_second`` (the quota refills 15/s for the whole account). One
    row that cannot be swept does not stop the others: it is logged and counted (``failed``)."""
    now = time.time() if now is None else now
    report = SweepReport()
    cutoff = int(now) - settings.sweep_after_seconds
    interval = 1.0 / settings.sweep_describe_per_second
    page_size = min(settings.sweep_max_items, 100)
    for row in tracker_table.running_created_before(cutoff, page_size):
        if report.examined >= settings.sweep_max_items:
            report.truncated = True  # the next run carries on: nothing is lost, only later
            break
        if report.examined:
            sleep(interval)
        report.examined += 1
        tracker_id = str(row["trackerId"])
        try:
            status, changed = _sweep_row(row, settings, report)
        except Exception:
            report.failed += 1
            logger.exception("could not sweep a row", extra={"trackerId": tracker_id})
            continue
        report.reconciled += int(changed)
        logger.info("swept", extra={"trackerId": tracker_id, "executionStatus": status, "reconciled": changed})
    return report


def _sweep_row(row: Mapping[str, Any], settings: Settings, report: SweepReport) -> tuple[str, bool]:
    tracker_id = str(row["trackerId"])
    described = executions.describe(execution_of(row, settings))
    if described is None:
        # The starter wrote the row but no execution was ever started (every retry of it died first).
        return "NOT_STARTED", tracker_table.mark_failed(tracker_id, "ExecutionNotStarted", "SWEEPER")
    status = str(described["status"])
    if status in EXECUTION_STATUS_ERRORS:
        detail = {"status": status, "name": tracker_id, "error": described.get("error")}
        detail["cause"] = described.get("cause")  # a TrackerNotRecorded failure carries the outcome to write
        return status, reconcile_execution(detail, source="SWEEPER")
    if status == "SUCCEEDED":
        # Every workflow's last state writes the tracker: a SUCCEEDED execution with a RUNNING row is a bug.
        report.anomalies += 1
        logger.error("execution succeeded but its tracker is RUNNING", extra={"trackerId": tracker_id})
    else:
        report.still_running += 1  # RUNNING (redriven) or PENDING_REDRIVE: not ours to end
    return status, False
