"""The follow-up workflow: a task for an agent when automation could not finish the job.

Three ways in, one state machine: a flow asks for a callback (the starter, ``operation=followUp``); a
transfer ends in a state that needs a person (a ``Holdline Task Failed`` event, e.g. REFUND_PENDING); or
one of Connect's own rules failed to create its task (``Amazon Connect Rules Action Execution Failed``,
:mod:`holdline.logic.rule_failures`).
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any

from holdline.config import Settings, get_settings, instance_id
from holdline.dal import bank_api, connect_tasks, executions, tracker_table
from holdline.errors import TrackerNotFound
from holdline.logic.bank_legs import LEDGER_KEYS
from holdline.logic.starter import tracker_id_for
from holdline.models.follow_up import FollowUpReason, FollowUpRequest
from holdline.models.tracker import TrackerRow
from holdline.observability import logger, mask
from holdline.workflows import FOLLOW_UP

if TYPE_CHECKING:
    from holdline.models.failure_event import FailureEventDetail

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


# ---- starting a follow-up from an event --------------------------------------------------------------------
def start_follow_up(
    request: FollowUpRequest,
    *,
    key: str,
    contact_id: str,
    instance_arn: str,
    settings: Settings,
    now: float | None = None,
) -> str:
    """Write the follow-up's tracker row and start its execution; idempotent on ``key``.

    ``key`` is what makes a repeat the same follow-up (a related tracker id, an EventBridge event id): the
    tracker id, and so the execution name, derive from it, as the starter's do from (contact, requestId).
    """
    tracker_id = tracker_id_for(FOLLOW_UP.operation, contact_id, key)
    started_at = time.time() if now is None else now
    existing = tracker_table.create(
        TrackerRow.new(
            tracker_id=tracker_id,
            operation=FOLLOW_UP.operation,
            steps_total=FOLLOW_UP.steps_total,
            contact_id=contact_id,
            instance_arn=instance_arn,
            request_id=key,
            request_fingerprint=request.fingerprint(),
            request=request.to_item(),
            started_at=started_at,
            ttl_days=settings.tracker_ttl_days,
        )
    )
    if existing is not None:
        logger.info("follow-up already started", extra={"trackerId": tracker_id})
    executions.start(
        FOLLOW_UP.state_machine_arn(settings), tracker_id, {"trackerId": tracker_id, "operation": FOLLOW_UP.operation}
    )
    return tracker_id


def follow_up_for_failed_transfer(detail: FailureEventDetail, settings: Settings | None = None) -> dict[str, str]:
    """A transfer ended in a state that needs a person: open a task for an agent, once per transfer."""
    settings = settings or get_settings()
    reason: FollowUpReason = "HELD_FOR_REVIEW"
    if detail.reason_code == "REFUND_PENDING":
        reason = "REFUND_PENDING"
    elif detail.reason_code == "OUTCOME_UNCONFIRMED":
        reason = "OUTCOME_UNCONFIRMED"
    request = FollowUpRequest(
        reason=reason,
        relatedTrackerId=detail.tracker_id,
        summary=f"Transfer {detail.tracker_id} failed with {detail.reason_code}; the caller may need a call back.",
    )
    follow_up_id = start_follow_up(
        request,
        key=detail.tracker_id,
        contact_id=detail.contact_id or detail.tracker_id,
        instance_arn=detail.instance_arn,
        settings=settings,
    )
    return {"followUpTrackerId": follow_up_id}


# ---- the state machine's task leg ---------------------------------------------------------------------------
def create_task(tracker_id: str, settings: Settings | None = None) -> dict[str, str]:
    """Create the agent's task from the tracker row (the claim check), idempotent by client token."""
    settings = settings or get_settings()
    row = tracker_table.get(tracker_id)
    if row is None:
        raise TrackerNotFound(f"no tracker row {tracker_id}")
    request = row.get("request", {})
    related_id = request.get("relatedTrackerId")
    related = tracker_table.get(related_id) if related_id else None
    contact_id = str(row.get("contactId", ""))
    if related is not None and _UUID.fullmatch(str(related.get("contactId", ""))):
        contact_id = str(related["contactId"])
    references = {"trackerId": tracker_id}
    if related_id:
        references["relatedTrackerId"] = related_id
    task_id = connect_tasks.start_task(
        instance_id=instance_id(settings.connect_instance_arn),
        contact_flow_id=settings.follow_up_contact_flow_id,
        name=_task_name(request.get("reason", "CALLBACK_REQUESTED")),
        description=_description(request, related),
        references=references,
        client_token=tracker_id,
        previous_contact_id=contact_id if _UUID.fullmatch(contact_id) else None,
        attributes={"holdlineTrackerId": tracker_id, "reason": str(request.get("reason", ""))},
    )
    logger.info("follow-up task created", extra={"taskContactId": task_id})
    return {"taskContactId": task_id}


_TASK_NAMES: dict[str, str] = {
    "CALLBACK_REQUESTED": "Call the customer back",
    "REFUND_PENDING": "Refund pending after a failed transfer",
    "OUTCOME_UNCONFIRMED": "Transfer outcome unconfirmed: check the ledger, call the customer",
    "CALLER_HUNG_UP": "Transfer finished after the caller hung up",
    "HELD_FOR_REVIEW": "Transfer needs a review",
    "RULE_RETRY": "Task re-created after a Connect rule failed",
}


def _task_name(reason: str) -> str:
    return _TASK_NAMES.get(reason, "Follow up")


def _description(request: dict[str, Any], related: dict[str, Any] | None) -> str:
    """Masked facts only: the agent opens the linked contact and the tracker for the rest."""
    lines = [f"Reason: {request.get('reason', '')}."]
    if request.get("summary"):
        lines.append(str(request["summary"]))
    if related is not None:
        transfer = related.get("request", {})
        lines.append(
            f"Transfer {related.get('trackerId')}: {transfer.get('amount')} {transfer.get('currency')} "
            f"from {mask(transfer.get('fromAccount'))} to {mask(transfer.get('toAccount'))}; "
            f"status {related.get('status')}, error {related.get('failureError', 'none')}, "
            f"refunded {bool(related.get('refunded'))}."
        )
        lines.append(ledger_facts(str(related.get("trackerId"))))
    return " ".join(lines)


#: What the task's ledger look-ups may take together (side by side), well inside the function's Timeout.
LEDGER_LOOKUP_SECONDS = 3.0


def _ledger_fact(reference: str, kind: str) -> str:
    try:
        payment = bank_api.find_payment(reference, kind)
    except Exception as exc:  # the task goes out all the same: the agent is told the fact is missing
        logger.warning("ledger look-up failed for a task", extra={"leg": kind, "error": type(exc).__name__})
        return f"{kind} could not be checked"
    if payment is None:
        return f"{kind} not found"
    return f"{kind} found ({payment.get('status', 'no status')}, {payment.get('amount', '?')})"


def ledger_facts(reference: str) -> str:
    """The bank's ledger under the transfer's three keys, as the task is created (read only: nothing is cancelled
    or moved): what the agent acts on, not what the saga last believed."""
    with bank_api.budget(LEDGER_LOOKUP_SECONDS):
        facts = bank_api.each_key(_ledger_fact, reference, LEDGER_KEYS)
    return "Ledger at the bank now: " + "; ".join(facts) + "."


__all__ = ["create_task", "follow_up_for_failed_transfer", "start_follow_up"]
