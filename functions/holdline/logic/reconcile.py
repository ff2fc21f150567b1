"""Failures are never silent.

The tracker row is the source of truth: whoever makes it FAILED (the saga, the reconciler, the sweeper), a
DynamoDB Stream carries that change to the notifier, which announces it once on the bus. The reconciler and
the sweeper only ever move a row RUNNING -> FAILED with a conditional write, so they never race the saga
into two outcomes and a replay changes nothing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from holdline.config import Settings
from holdline.dal import events, executions, failures, tracker_table
from holdline.errors import describe_failure, failure_reason
from holdline.observability import logger, mask
from holdline.workflows import get_workflow

SCHEMA_VERSION = "1"
#: Steps after which money may have moved: a failure there that the saga did not settle needs a person.
MONEY_STEPS = frozenset({"DEBITING", "CREDITING", "CONFIRMING", "REFUNDING"})
#: How long an operator (or a flow offering a retry) should wait before trying a retryable failure again.
RETRY_DELAY_SECONDS = 60

# Step Functions execution status -> the failureError the tracker records.
EXECUTION_STATUS_ERRORS = {
    "FAILED": "ExecutionFailed",
    "TIMED_OUT": "ExecutionTimedOut",
    "ABORTED": "ExecutionAborted",
}


# ---- the failure event ---------------------------------------------------------------------------------------
def failure_detail(row: dict[str, Any], previous_step: str | None = None) -> dict[str, Any]:
    """The ``detail`` of a ``Holdline Task Failed`` event, modeled on Connect's rule-failure notification.

    Masked: account numbers keep their last four; nothing else from the request but amount and currency.
    """
    error_name = row.get("failureError")
    reason_code, retryable = failure_reason(error_name)
    _, message = describe_failure(error_name)
    source = str(row.get("failureSource", "SAGA"))
    step = previous_step or str(row.get("step", ""))
    manual_review = reason_code == "REFUND_PENDING" or (source != "SAGA" and step in MONEY_STEPS)
    request = row.get("request") or {}
    return {
        "version": SCHEMA_VERSION,
        "trackerId": row["trackerId"],
        "dedupeKey": f"{row['trackerId']}:FAILED",
        "operation": row.get("operation", ""),
        "contactId": row.get("contactId", ""),
        "instanceArn": row.get("instanceArn", ""),
        "executionName": row.get("executionName", row["trackerId"]),
        "step": step,
        "reasonCode": reason_code,
        "error": error_name or "Unknown",
        "errorMessage": message,
        "failureSource": source,
        "refunded": bool(row.get("refunded", False)),
        "failedAt": str(row.get("updatedAt", "")),
        "request": {
            "fromAccount": mask(request.get("fromAccount")),
            "toAccount": mask(request.get("toAccount")),
            "amount": str(request.get("amount", "")),
            "currency": str(request.get("currency", "")),
        },
        "additionalInfo": {
            "retryable": retryable,
            "retryDelay": RETRY_DELAY_SECONDS if retryable else 0,
            "manualReviewRequired": manual_review,
        },
    }


@dataclass
class NotifyResult:
    published: list[dict[str, Any]] = field(default_factory=list)
    skipped: int = 0
    failed_sequence: str | None = None


def _became_failed(record: dict[str, Any]) -> bool:
    # The ESM's filter already sends only these; checked again because a replay or a pump may not filter.
    change = record.get("dynamodb", {})
    old = change.get("OldImage", {}).get("status", {}).get("S")
    new = change.get("NewImage", {}).get("status", {}).get("S")
    return record.get("eventName") == "MODIFY" and old == "RUNNING" and new == "FAILED"


def notify_failures(records: Iterable[dict[str, Any]], state_machine_arn: str) -> NotifyResult:
    """Announce each RUNNING -> FAILED change once. On an error, stop and report that record's sequence
    number (ReportBatchItemFailures): the ESM retries from there, and rows already announced are skipped."""
    result = NotifyResult()
    for record in records:
        change = record.get("dynamodb", {})
        sequence = str(change.get("SequenceNumber", ""))
        if not _became_failed(record):
            result.skipped += 1
            continue
        tracker_id = change["Keys"]["trackerId"]["S"]
        logger.append_keys(trackerId=tracker_id)
        try:
            # Consistent read, so a retry sees failureNotifiedAt; now=0 keeps a row past its TTL (still announced).
            row = tracker_table.get(tracker_id, now=0)
            if row is None or row.get("failureNotifiedAt"):
                logger.info("failure already announced", extra={"duplicate": row is not None})
                result.skipped += 1
                continue
            previous = failures.deserialize_image(change.get("OldImage", {})).get("step")
            detail = failure_detail(row, previous_step=str(previous) if previous else None)
            arn = executions.execution_arn(state_machine_arn, detail["executionName"]) if state_machine_arn else ""
            resources = [arn] if arn else []
            event_id = events.put_failure_event(detail, resources)
            # A crash between PutEvents and this write means one more PutEvents on retry: consumers dedupe
            # on detail.dedupeKey (documented). The reverse order could lose the event, which is worse.
            if not failures.mark_notified(tracker_id, event_id):
                logger.warning("failure announced twice by racing deliveries", extra={"eventId": event_id})
            logger.info("failure announced", extra={"reasonCode": detail["reasonCode"], "eventId": event_id})
            result.published.append(detail)
        except Exception:
            logger.exception("could not announce a failure")
            result.failed_sequence = sequence
            return result
    return result


# ---- the reconciler -------------------------------------------------------------------------------------------
def tracker_id_of(detail: dict[str, Any]) -> str | None:
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


def reconcile_execution(detail: dict[str, Any], source: str = "RECONCILER") -> bool:
    """A "Step Functions Execution Status Change" detail: if the execution ended badly and the tracker is still
    RUNNING, make it FAILED. True if this call changed the row."""
    error_name = EXECUTION_STATUS_ERRORS.get(str(detail.get("status")))
    tracker_id = tracker_id_of(detail)
    if error_name is None or tracker_id is None:
        logger.info("nothing to reconcile", extra={"executionStatus": detail.get("status")})
        return False
    logger.append_keys(trackerId=tracker_id)
    changed = failures.mark_failed(tracker_id, error_name, source, execution_error=detail.get("error"))
    logger.info("reconciled" if changed else "already final", extra={"executionStatus": detail["status"]})
    return changed


# ---- the sweeper ----------------------------------------------------------------------------------------------
@dataclass
class SweepReport:
    examined: int = 0
    reconciled: int = 0
    still_running: int = 0
    anomalies: int = 0
    truncated: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "examined": self.examined,
            "reconciled": self.reconciled,
            "stillRunning": self.still_running,
            "anomalies": self.anomalies,
            "truncated": self.truncated,
        }


def sweep(
    settings: Settings,
    *,
    now: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> SweepReport:
    """Find trackers RUNNING past ``sweep_after_seconds`` (longer than the state machine may run), ask Step
    Functions for the truth and reconcile. Bounded: at most ``sweep_max_items`` rows and DescribeExecution
    calls per run, paced at ``sweep_describe_per_second`` (the quota refills 15/s for the whole account)."""
    now = time.time() if now is None else now
    report = SweepReport()
    cutoff = int(now) - settings.sweep_after_seconds
    interval = 1.0 / settings.sweep_describe_per_second
    page_size = min(settings.sweep_max_items, 100)
    for row in failures.running_created_before(cutoff, page_size):
        if report.examined >= settings.sweep_max_items:
            report.truncated = True  # the next run carries on: nothing is lost, only later
            break
        if report.examined:
            sleep(interval)
        report.examined += 1
        tracker_id = str(row["trackerId"])
        workflow = get_workflow(str(row.get("operation", "")))
        machine = workflow.state_machine_arn(settings) if workflow else settings.transfer_state_machine_arn
        described = failures.describe_execution(executions.execution_arn(machine, tracker_id))
        if described is None:
            # The starter wrote the row but no execution was ever started (every retry of it died first).
            status: str = "NOT_STARTED"
            changed = failures.mark_failed(tracker_id, "ExecutionNotStarted", "SWEEPER")
        elif described["status"] in EXECUTION_STATUS_ERRORS:
            status = str(described["status"])
            changed = reconcile_execution(
                {"status": status, "name": tracker_id, "error": described.get("error")}, source="SWEEPER"
            )
        else:
            status = str(described["status"])
            changed = False
            if status == "SUCCEEDED":
                # The saga's last state writes the tracker: a SUCCEEDED execution with a RUNNING row is a bug.
                report.anomalies += 1
                logger.error("execution succeeded but its tracker is RUNNING", extra={"trackerId": tracker_id})
            else:
                report.still_running += 1  # RUNNING (redriven) or PENDING_REDRIVE: not ours to end
        report.reconciled += int(changed)
        logger.info("swept", extra={"trackerId": tracker_id, "executionStatus": status, "reconciled": changed})
    return report
