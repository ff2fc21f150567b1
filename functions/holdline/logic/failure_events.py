"""Failures are never silent: the ``Holdline Task Failed`` event.

The tracker row is the source of truth: whoever makes it FAILED (the saga, the reconciler, the sweeper), a
DynamoDB Stream carries that change to the notifier, which announces it once on the bus
(docs/failure-events.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from holdline.config import Settings
from holdline.dal import events, executions, tracker_table
from holdline.errors import OutcomeUnconfirmed, RefundPending, describe_failure, failure_reason
from holdline.models.tracker import TrackerStatus, TrackerStep
from holdline.observability import logger, mask
from holdline.workflows import DEFAULT_OPERATION, get_workflow

SCHEMA_VERSION = "1"
#: Steps after which money may have moved: a failure there that the saga did not settle needs a person.
MONEY_STEPS = frozenset({TrackerStep.DEBITING, TrackerStep.CREDITING, TrackerStep.CONFIRMING, TrackerStep.REFUNDING})
#: The saga's own outcomes that leave money for a person: a debit the refund could not give back, and a transfer
#: whose outcome at the bank could not be established.
NEEDS_A_PERSON = frozenset({RefundPending.code, OutcomeUnconfirmed.code})
#: How long an operator (or a flow offering a retry) should wait before trying a retryable failure again.
RETRY_DELAY_SECONDS = 60


def failure_detail(row: Mapping[str, Any], previous_step: str | None = None) -> dict[str, Any]:
    """The ``detail`` of a ``Holdline Task Failed`` event, modeled on Connect's rule-failure notification.

    Masked: account numbers keep their last four; nothing else from the request but amount and currency.

    A failure that needs a person (``manualReviewRequired``: a refund still pending, an outcome unconfirmed, or an
    execution that ended from outside after money may have moved) is never ``retryable``: a consumer that honours
    ``retryable`` would start a second transfer while the first one's money is unaccounted for.
    """
    error_name = row.get("failureError")
    reason_code, retryable = failure_reason(error_name)
    _, message = describe_failure(error_name)
    source = str(row.get("failureSource", "SAGA"))
    step = previous_step or str(row.get("step", ""))
    manual_review = reason_code in NEEDS_A_PERSON or (source != "SAGA" and step in MONEY_STEPS)
    retryable = retryable and not manual_review
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


def became_failed(event_name: str | None, old_image: Mapping[str, Any], new_image: Mapping[str, Any]) -> bool:
    """RUNNING -> FAILED. The ESM's filter already sends only these; checked again because a replay or a pump
    may not filter."""
    return (
        event_name == "MODIFY"
        and old_image.get("status") == TrackerStatus.RUNNING
        and new_image.get("status") == TrackerStatus.FAILED
    )


def announce(tracker_id: str, old_image: Mapping[str, Any], settings: Settings) -> dict[str, Any] | None:
    """Put one failure event on the bus for a tracker that became FAILED; return its detail, or None if the
    failure was announced already (a retried batch, a redriven record). Raises if it could not be announced:
    the batch processor reports the record, and the stream mapping retries it."""
    logger.append_keys(trackerId=tracker_id)
    # Consistent read, so a retry sees failureNotifiedAt; now=0 keeps a row past its TTL (still announced).
    row = tracker_table.get(tracker_id, now=0)
    if row is None or row.get("failureNotifiedAt"):
        logger.info("failure already announced", extra={"duplicate": row is not None})
        return None
    previous = old_image.get("step")
    detail = failure_detail(row, previous_step=str(previous) if previous else None)
    workflow = get_workflow(str(detail["operation"] or DEFAULT_OPERATION))  # rows older than the registry
    machine = workflow.state_machine_arn(settings) if workflow else ""
    resources = [executions.execution_arn(machine, detail["executionName"])] if machine else []
    event_id = events.put_failure_event(detail, resources)
    # A crash between PutEvents and this write means one more PutEvents on retry: consumers dedupe on
    # detail.dedupeKey (documented). The reverse order could lose the event, which is worse.
    if not tracker_table.mark_notified(tracker_id, event_id):
        logger.warning("failure announced twice by racing deliveries", extra={"eventId": event_id})
    logger.info("failure announced", extra={"reasonCode": detail["reasonCode"], "eventId": event_id})
    return detail
