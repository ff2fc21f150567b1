"""Connect rule failures' rows in the tracker table: one record per EventBridge event (``connectRuleFailure-…``)
and one retry counter per rule and UTC day (``connectRuleRetries-…``).

Every write is conditional, so Lambda's retries of the same event (and a redrive from its dead-letter queue)
change nothing twice: a record becomes HANDLED once, after its work; an event takes its rule's budget once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from holdline.config import get_settings
from holdline.dal import aws, tracker_table

RECEIVED = "RECEIVED"
HANDLED = "HANDLED"


def record_id(event_id: str) -> str:
    return "connectRuleFailure-" + hashlib.sha256(event_id.encode()).hexdigest()[:32]


def record(item: Mapping[str, Any]) -> dict[str, Any] | None:
    """Keep the failure (status RECEIVED); return the record already there (a repeat delivery), else None."""
    return tracker_table.create({**item, "status": RECEIVED})


def _update(tracker_id: str, **request: Any) -> None:
    aws.call(
        "dynamodb",
        "update_item",
        TableName=get_settings().tracker_table_name,
        Key={"trackerId": {"S": tracker_id}},
        **request,
    )


def mark_handled(tracker_id: str, outcome: Mapping[str, str]) -> None:
    """RECEIVED -> HANDLED with the outcome: from now on a repeat delivery of the event is a duplicate."""
    _update(
        tracker_id,
        UpdateExpression="SET #status = :handled, outcome = :outcome, handledAt = :now",
        ConditionExpression="attribute_exists(trackerId)",
        ExpressionAttributeNames={"#status": "status"},
        ExpressionAttributeValues={
            ":handled": {"S": HANDLED},
            ":outcome": {"M": {key: {"S": value} for key, value in outcome.items()}},
            ":now": {"S": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")},
        },
    )


def take_retry_budget(rule_id: str, day: str, event_id: str, limit: int, expires_at: int) -> bool:
    """One of the rule's ``limit`` re-attempts for ``day``, for this event: True if it has one (taken now, or by
    an earlier delivery of the same event), False if the day's budget is spent. The counter row keeps the ids of
    the events that took it, so a retried delivery never takes a second one."""
    try:
        _update(
            f"connectRuleRetries-{rule_id}-{day}",
            UpdateExpression="ADD attempts :one, eventIds :event SET expiresAt = if_not_exists(expiresAt, :expires)",
            ConditionExpression="(attribute_not_exists(attempts) OR attempts < :max) AND NOT contains(eventIds, :id)",
            ExpressionAttributeValues={
                ":one": {"N": "1"},
                ":event": {"SS": [event_id]},
                ":id": {"S": event_id},
                ":max": {"N": str(limit)},
                ":expires": {"N": str(expires_at)},
            },
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
            raise
        taken = exc.response.get("Item", {}).get("eventIds", {}).get("SS", [])
        return event_id in taken
    return limit > 0
