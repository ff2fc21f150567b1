"""Amazon Connect's own rule actions that failed ("Rules Action Execution Failed"): recorded, then re-attempted
through the follow-up workflow when Connect says it is worth it, else dead-lettered for a person.

No failure is dropped: the record is marked HANDLED only after its follow-up started or its dead letter was
sent. Until then a repeat delivery (Lambda's async retries, EventBridge's, a redrive of AsyncInvokeDLQ) does
the work again, and every step of it is idempotent for the event: the follow-up's tracker and execution
are named after the event id, and the event takes its rule's daily budget once. Only a dead letter can be
sent twice (a crash after SendMessage and before the record is marked): its body names the event id.
"""

from __future__ import annotations

import time
from datetime import UTC

from holdline.config import Settings, get_settings
from holdline.dal import dead_letters, rule_failures
from holdline.logic.follow_up import start_follow_up
from holdline.models.follow_up import FollowUpRequest
from holdline.models.rule_failure import RuleActionFailedEvent, RuleActionFailure
from holdline.observability import logger

#: Actions Holdline can redo for Connect (through its follow-up workflow).
REDOABLE_ACTIONS = frozenset({"CREATE_TASK"})


def handle_rule_failure(
    event: RuleActionFailedEvent, settings: Settings | None = None, now: float | None = None
) -> dict[str, str]:
    settings = settings or get_settings()
    now = time.time() if now is None else now
    failure = event.detail
    logger.append_keys(ruleId=failure.rule_id, actionType=failure.action_type, reasonCode=failure.reason_code)
    record_id = rule_failures.record_id(event.id)
    existing = rule_failures.record(
        {
            "trackerId": record_id,
            "operation": "connectRuleFailure",
            "eventId": event.id,
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
    if existing is not None and existing.get("status") == rule_failures.HANDLED:
        logger.info("rule failure already handled (repeat delivery)")
        return {"outcome": "DUPLICATE"}
    if existing is not None:
        logger.warning("rule failure delivered again before it was handled: handling it now")
    else:
        logger.warning("Connect rule action failed", extra={"retryable": failure.retryable})
    outcome = _act(event, settings, now)
    rule_failures.mark_handled(record_id, outcome)
    return outcome


def _act(event: RuleActionFailedEvent, settings: Settings, now: float) -> dict[str, str]:
    failure = event.detail
    if failure.action_type not in REDOABLE_ACTIONS:
        # We cannot redo another service's notification or event for it: a person has to look.
        return _dead_letter(event, settings, "UnsupportedAction" if failure.retryable else "NotRetryable")
    if not failure.retryable:
        return _dead_letter(event, settings, "NotRetryable")
    # The day the failure happened (the event's time): a repeat delivery after midnight decides the same way.
    day = event.time.astimezone(UTC).strftime("%Y%m%d")
    taken = rule_failures.take_retry_budget(
        failure.rule_id, day, event.id, settings.max_rule_retries_per_day, int(now) + 2 * 86400
    )
    if not taken:
        return _dead_letter(event, settings, "MaximumRetryAttempts")
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
        key=event.id,
        contact_id=f"rule-{failure.rule_id}",
        instance_arn=failure.instance_arn,
        settings=settings,
        now=now,
    )
    return {"outcome": "RETRY_SCHEDULED", "followUpTrackerId": follow_up_id}


def _dead_letter(event: RuleActionFailedEvent, settings: Settings, condition: str) -> dict[str, str]:
    failure: RuleActionFailure = event.detail
    dead_letters.send(
        settings.follow_up_dlq_url,
        {"eventId": event.id, "source": "aws.connect", **failure.model_dump(by_alias=True)},
        {
            "ERROR_CODE": failure.reason_code,
            "ERROR_MESSAGE": failure.error,
            "EXHAUSTED_RETRY_CONDITION": condition,
            "RETRY_ATTEMPTS": "0",
            "RULE_ARN": f"{failure.instance_arn}/rule/{failure.rule_id}" if failure.instance_arn else failure.rule_id,
        },
    )
    return {"outcome": "DEAD_LETTERED", "condition": condition}
