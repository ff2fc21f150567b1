"""Reconciliation: executions that ended without their saga writing the tracker (killed from outside, timed out,
never started) still end their tracker row.

The reconciler acts on Step Functions' status change events (every workflow's); the sweeper asks
DescribeExecution about rows still RUNNING long after any execution could be (status change events are best
effort). Both only ever move a row RUNNING -> final with a conditional write (FAILED, or the outcome a saga knew
but could not write: TrackerNotRecorded), so they never race the saga into two outcomes and a replay changes
nothing; the row's change is announced by the notifier
(:mod:`holdline.logic.failure_events`). The sweeper also announces, through the notifier's own path, FAILED rows
whose announcement was lost (no ``failureNotifiedAt`` long after they failed).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from holdline.config import Settings
from holdline.dal import executions, tracker_table
from holdline.errors import TrackerNotRecorded
from holdline.logic import failure_events
from holdline.logic.tracking import NOT_STARTED_ERROR
from holdline.models.tracker import TrackerStatus, TrackerStep
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
#: The cursors' names (one per partition of StatusCreatedIndex the sweeper walks).
RUNNING_CURSOR = "running"
FAILED_CURSOR = "failed"


@dataclass
class SweepReport:
    examined: int = 0
    reconciled: int = 0
    still_running: int = 0
    anomalies: int = 0
    failed: int = 0
    truncated: bool = False
    #: FAILED rows read looking for a lost announcement, and how many of them this run announced.
    failed_rows_read: int = 0
    announced: int = 0
    manual_review_announced: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "examined": self.examined,
            "reconciled": self.reconciled,
            "stillRunning": self.still_running,
            "anomalies": self.anomalies,
            "failed": self.failed,
            "truncated": self.truncated,
            "failedRowsRead": self.failed_rows_read,
            "announced": self.announced,
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
    clock: Callable[[], float] = time.time,
) -> SweepReport:
    """Find trackers RUNNING past ``sweep_after_seconds`` (longer than any state machine may run), ask Step
    Functions for the truth and reconcile; then announce FAILED rows whose announcement was lost. Bounded: at
    most ``sweep_max_items`` rows and DescribeExecution calls per run, paced at ``sweep_describe_per_second``
    (the quota refills 15/s for the whole account), and ``sweep_max_failed_reads`` FAILED rows read. One row
    that cannot be swept does not stop the others: it is logged and counted (``failed``).

    No starvation: each walk resumes where the previous run stopped (a cursor kept in the table) and starts
    again from the oldest row once it reached the newest, so a row due is examined within
    ceil(rows due / sweep_max_items) + 1 runs, however many rows ahead of it are legitimately still running (a
    follow-up in its Delay), instead of the same oldest ``sweep_max_items`` rows every run. Why a saved
    ExclusiveStartKey rather than the alternatives: a ``nextSweepAt`` mark on healthy rows cannot be filtered on
    in StatusCreatedIndex (it projects only ``operation``; changing a projection replaces the index), so every
    run would still read every healthy row; paging further within one run is bounded by the same
    DescribeExecution budget and still restarts at the oldest row. The cursor costs one GetItem per walk and one
    UpdateItem when it moves, and the function runs one at a time (ReservedConcurrentExecutions: 1).

    ``now`` is the time the RUNNING window is measured at (tests move it forward to make rows due). Lost
    announcements are judged on ``clock``, the wall clock every writer stamps ``updatedAt`` with: a failure
    the notifier is announcing this very second must not look lost because a caller's ``now`` is ahead."""
    report = SweepReport()
    _sweep_running(settings, clock() if now is None else now, sleep, report)
    _announce_lost_failures(settings, clock(), report)
    return report


def _sweep_running(settings: Settings, now: float, sleep: Callable[[float], None], report: SweepReport) -> None:
    cutoff = int(now) - settings.sweep_after_seconds
    interval = 1.0 / settings.sweep_describe_per_second
    page_size = min(settings.sweep_max_items, 100)
    start = tracker_table.sweep_cursor(RUNNING_CURSOR)
    last: dict[str, Any] | None = None
    rows = tracker_table.created_before(TrackerStatus.RUNNING, cutoff, page_size, start)
    for row, position in rows:
        if report.examined >= settings.sweep_max_items:
            report.truncated = True  # the next run carries on from ``last``: nothing is lost, only later
            break
        if report.examined:
            sleep(interval)
        report.examined += 1
        last = position
        tracker_id = str(row["trackerId"])
        try:
            status, changed = _sweep_row(row, settings, report)
        except Exception:
            report.failed += 1
            logger.exception("could not sweep a row", extra={"trackerId": tracker_id})
            continue
        report.reconciled += int(changed)
        logger.info("swept", extra={"trackerId": tracker_id, "executionStatus": status, "reconciled": changed})
    # Truncated: resume after the last row examined. Reached the newest row due: start from the oldest next time.
    _move_cursor(RUNNING_CURSOR, last if report.truncated else None, start)


def _move_cursor(name: str, position: dict[str, Any] | None, previous: dict[str, Any] | None) -> None:
    if position is not None or previous is not None:
        tracker_table.save_sweep_cursor(name, position)


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


# ---- lost announcements ---------------------------------------------------------------------------------------
def _announce_lost_failures(settings: Settings, now: float, report: SweepReport) -> None:
    """FAILED rows without ``failureNotifiedAt`` ``sweep_announce_after_seconds`` after they failed: the
    notifier never announced them (its stream record is kept 24 h and dead-lettered after its retries; a
    dead letter not redriven in time is gone). Announced through the notifier's own path
    (:func:`holdline.logic.failure_events.announce`): its consistent read and the conditional write on
    ``failureNotifiedAt`` make a second run announce nothing more; a run racing the notifier at the same moment
    can at worst put one more event with the same ``dedupeKey``, the window the notifier already has.

    The FAILED rows are found in StatusCreatedIndex (no Scan) and read by key (the index projects only
    ``operation``), at most ``sweep_max_failed_reads`` a run, from a cursor of their own: the walk visits every
    FAILED row still in the table (until TTL deletes it) once per ceil(FAILED rows / sweep_max_failed_reads)
    runs."""
    grace = settings.sweep_announce_after_seconds
    start = tracker_table.sweep_cursor(FAILED_CURSOR)
    last: dict[str, Any] | None = None
    truncated = False
    # A row cannot have failed before it was created: only rows created before the grace can be due.
    for item, position in tracker_table.created_before(TrackerStatus.FAILED, int(now) - grace, 100, start):
        if report.failed_rows_read >= settings.sweep_max_failed_reads:
            truncated = True
            break
        report.failed_rows_read += 1
        last = position
        tracker_id = str(item["trackerId"])
        try:
            _announce_if_lost(tracker_id, settings, now - grace, report)
        except Exception:
            report.failed += 1
            logger.exception("could not announce a failure", extra={"trackerId": tracker_id})
    _move_cursor(FAILED_CURSOR, last if truncated else None, start)


def _announce_if_lost(tracker_id: str, settings: Settings, failed_before: float, report: SweepReport) -> None:
    row = tracker_table.get(tracker_id, include_expired=True)
    if row is None or row.get("failureNotifiedAt") or row.get("status") != TrackerStatus.FAILED:
        return
    failed_at = _epoch(row.get("updatedAt")) or float(row.get("createdAt", 0))
    if failed_at > failed_before:
        return  # recent: the notifier, seconds behind a change, announces it (or is retrying it)
    detail = failure_events.announce(tracker_id, {"step": step_before_failure(row)}, settings)
    if detail is None:
        return
    report.announced += 1
    report.manual_review_announced += int(bool(detail["additionalInfo"]["manualReviewRequired"]))
    logger.warning("announced a failure the notifier never did", extra={"trackerId": tracker_id})


def step_before_failure(row: Mapping[str, Any]) -> str:
    """The step the row was at when it failed, for an announcement made without the stream's old image.

    Every write to FAILED sets step DONE, so the step before is known only from the old image, which a lost
    stream record took with it. A row never started was at STARTED. A failure the saga recorded is described
    by its own error (a pending refund is REFUND_PENDING whatever the step). An execution that ended from
    outside (reconciler, sweeper) may have done so after its debit: assume the first step after which money may
    have moved, so the event asks a person (``manualReviewRequired``, never ``retryable``) instead of inviting
    a second transfer. A workflow that moves no money has no such step: its row's own step is reported."""
    if row.get("failureError") == NOT_STARTED_ERROR:
        return TrackerStep.STARTED.value
    step = str(row.get("step", ""))
    if str(row.get("failureSource", "SAGA")) == "SAGA":
        return step
    workflow = get_workflow(str(row.get("operation") or DEFAULT_OPERATION))
    steps = list(workflow.steps) if workflow else []
    money = [name for name in steps if name in failure_events.MONEY_STEPS]
    return str(money[0]) if money else step


def _epoch(value: Any) -> float | None:
    """An ISO 8601 ``updatedAt`` (the saga's EnteredTime or ours, ``Z`` or an offset) as epoch seconds."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None
