"""The follow-up workflow: a task for an agent when automation could not finish the job.

Three ways in, one state machine: a flow asks for a callback (the starter, ``operation=followUp``); a
transfer ends in a state that needs a person (a ``Holdline Task Failed`` event, e.g. REFUND_PENDING); or
one of Connect's own rules failed to create its task (``Amazon Connect Rules Action Execution Failed``).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from datetime import UTC, datetime
from typing import Any, Literal

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field, field_validator

from holdline.config import Settings, get_settings, instance_id
from holdline.dal import aws, connect_tasks, dead_letters, executions, tracker_table
from holdline.errors import RequestRejected, TrackerNotFound
from holdline.logic.starter import tracker_id_for
from holdline.models.follow_up import FollowUpReason, FollowUpRequest
from holdline.observability import logger, mask
from holdline.workflows import FOLLOW_UP

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
MAX_RETRY_DELAY_SECONDS = 3600


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
        {
            "trackerId": tracker_id,
            "operation": FOLLOW_UP.operation,
            "status": "RUNNING",
            "step": "STARTED",
            "stepsDone": 0,
            "stepsTotal": FOLLOW_UP.steps_total,
            "contactId": contact_id,
            "instanceArn": instance_arn,
            "requestId": key,
            "requestFingerprint": request.fingerprint(),
            "request": request.to_item(),
            "executionName": tracker_id,
            "createdAt": int(started_at),
            "expiresAt": int(started_at) + settings.tracker_ttl_days * 86400,
        }
    )
    if existing is not None:
        logger.info("follow-up already started", extra={"trackerId": tracker_id})
    executions.start(
        FOLLOW_UP.state_machine_arn(settings), tracker_id, {"trackerId": tracker_id, "operation": FOLLOW_UP.operation}
    )
    return tracker_id


def follow_up_for_failed_transfer(detail: dict[str, Any], settings: Settings | None = None) -> dict[str, str]:
    """A transfer ended in a state that needs a person: open a task for an agent, once per transfer."""
    settings = settings or get_settings()
    tracker_id = detail.get("trackerId")
    reason_code = detail.get("reasonCode")
    if not isinstance(tracker_id, str) or not isinstance(reason_code, str):
        raise RequestRejected("INVALID_EVENT", "a failure event needs trackerId and reasonCode")
    reason: FollowUpReason = "REFUND_PENDING" if reason_code == "REFUND_PENDING" else "HELD_FOR_REVIEW"
    request = FollowUpRequest(
        reason=reason,
        relatedTrackerId=tracker_id,
        summary=f"Transfer {tracker_id} failed with {reason_code}; the caller may need a call back.",
    )
    follow_up_id = start_follow_up(
        request,
        key=tracker_id,
        contact_id=str(detail.get("contactId") or tracker_id),
        instance_arn=str(detail.get("instanceArn") or ""),
        settings=settings,
    )
    return {"followUpTrackerId": follow_up_id}


# ---- Connect's rule-action failures --------------------------------------------------------------------------
class RuleActionFailure(BaseModel):
    """``detail`` of Connect's "Rules Action Execution Failed" event (admin guide, error notifications)."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    rule_id: str = Field(alias="ruleId", min_length=1, max_length=256)
    action_type: str = Field(alias="actionType", min_length=1, max_length=64)
    trigger_event: str = Field(default="", alias="triggerEvent", max_length=256)
    instance_arn: str = Field(default="", alias="instanceArn", max_length=256)
    reason_code: str = Field(default="Unknown", alias="reasonCode", max_length=256)
    error: str = Field(default="", max_length=4096)
    retryable: bool = False
    retry_delay_seconds: int = Field(default=0, ge=0)

    @field_validator("retry_delay_seconds", mode="before")
    @classmethod
    def _cap(cls, value: Any) -> Any:
        return min(int(value), MAX_RETRY_DELAY_SECONDS) if isinstance(value, int | float | str) else value


def parse_rule_failure(detail: Any) -> RuleActionFailure:
    """``additionalInfo`` arrives as a JSON string in Connect's sample; accept an object too."""
    if not isinstance(detail, dict):
        raise RequestRejected("INVALID_EVENT", "detail is not an object")
    info = detail.get("additionalInfo") or {}
    if isinstance(info, str):
        try:
            info = json.loads(info)
        except json.JSONDecodeError:
            info = {}
    info = info if isinstance(info, dict) else {}
    retryable = info.get("retryable", False)
    delay = info.get("retryDelay", 0)
    try:
        delay = max(0, int(float(delay)))
    except (TypeError, ValueError):
        delay = 0
    return RuleActionFailure.model_validate(
        {**detail, "retryable": retryable is True or str(retryable).lower() == "true", "retry_delay_seconds": delay}
    )


def handle_rule_failure(
    event: dict[str, Any], settings: Settings | None = None, now: float | None = None
) -> dict[str, str]:
    settings = settings or get_settings()
    now = time.time() if now is None else now
    failure = parse_rule_failure(event.get("detail"))
    event_id = str(event.get("id") or hashlib.sha256(json.dumps(event, sort_keys=True).encode()).hexdigest())
    logger.append_keys(ruleId=failure.rule_id, actionType=failure.action_type, reasonCode=failure.reason_code)
    if not _record(failure, event_id, settings, now):
        logger.info("rule failure already handled (repeat delivery)")
        return {"outcome": "DUPLICATE"}
    logger.warning("Connect rule action failed", extra={"retryable": failure.retryable})
    if failure.action_type != "CREATE_TASK":
        # We cannot redo another service's notification or event for it: a person has to look.
        return _dead_letter(
            failure, event_id, settings, "NotRetryable" if not failure.retryable else "UnsupportedAction"
        )
    if not failure.retryable:
        return _dead_letter(failure, event_id, settings, "NotRetryable")
    if not _take_retry_budget(failure.rule_id, settings, now):
        return _dead_letter(failure, event_id, settings, "MaximumRetryAttempts")
    request = FollowUpRequest(
        reason="RULE_RETRY",
        delaySeconds=failure.retry_delay_seconds,
        summary=(
            f"Connect rule {failure.rule_id} could not create its task ({failure.reason_code}); "
            f"trigger {failure.trigger_event or 'unknown'}. Re-attempted by Holdline."
        ),
    )
    follow_up_id = start_follow_up(
        request,
        key=event_id,
        contact_id=f"rule-{failure.rule_id}",
        instance_arn=failure.instance_arn,
        settings=settings,
    )
    return {"outcome": "RETRY_SCHEDULED", "followUpTrackerId": follow_up_id}


def _record(failure: RuleActionFailure, event_id: str, settings: Settings, now: float) -> bool:
    """Every failure is kept (for a week, like trackers); a repeat delivery of the same event is spotted."""
    already = tracker_table.create(
        {
            "trackerId": "connectRuleFailure-" + hashlib.sha256(event_id.encode()).hexdigest()[:32],
            "operation": "connectRuleFailure",
            "status": "RECORDED",
            "eventId": event_id,
            "ruleId": failure.rule_id,
            "actionType": failure.action_type,
            "reasonCode": failure.reason_code,
            "error": failure.error[:1000],
            "retryable": failure.retryable,
            "retryDelaySeconds": failure.retry_delay_seconds,
            "instanceArn": failure.instance_arn,
            "createdAt": int(now),
            "expiresAt": int(now) + settings.tracker_ttl_days * 86400,
        }
    )
    return already is None


def _take_retry_budget(rule_id: str, settings: Settings, now: float) -> bool:
    """At most ``max_rule_retries_per_day`` re-attempts per rule per UTC day: a rule that keeps failing
    (a quota that never frees up) must not turn into a flood of tasks."""
    day = datetime.fromtimestamp(now, UTC).strftime("%Y%m%d")
    try:
        aws.call(
            "dynamodb",
            "update_item",
            TableName=settings.tracker_table_name,
            Key={"trackerId": {"S": f"connectRuleRetries-{rule_id}-{day}"}},
            UpdateExpression="ADD attempts :one SET expiresAt = if_not_exists(expiresAt, :expires)",
            ConditionExpression="attribute_not_exists(attempts) OR attempts < :max",
            ExpressionAttributeValues={
                ":one": {"N": "1"},
                ":max": {"N": str(settings.max_rule_retries_per_day)},
                ":expires": {"N": str(int(now) + 2 * 86400)},
            },
        )
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
            return False
        raise
    return settings.max_rule_retries_per_day > 0


def _dead_letter(failure: RuleActionFailure, event_id: str, settings: Settings, condition: str) -> dict[str, str]:
    dead_letters.send(
        settings.follow_up_dlq_url,
        {"eventId": event_id, "source": "aws.connect", **failure.model_dump(by_alias=True)},
        {
            "ERROR_CODE": failure.reason_code,
            "ERROR_MESSAGE": failure.error,
            "EXHAUSTED_RETRY_CONDITION": condition,
            "RETRY_ATTEMPTS": "0",
            "RULE_ARN": f"{failure.instance_arn}/rule/{failure.rule_id}" if failure.instance_arn else failure.rule_id,
        },
    )
    return {"outcome": "DEAD_LETTERED", "condition": condition}


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
    return " ".join(lines)


__all__ = [
    "Literal",
    "RuleActionFailure",
    "create_task",
    "follow_up_for_failed_transfer",
    "handle_rule_failure",
    "parse_rule_failure",
    "start_follow_up",
]
