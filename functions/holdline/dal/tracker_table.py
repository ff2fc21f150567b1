"""The tracker table: one row per long-running request (:class:`holdline.models.tracker.TrackerRow`), written
by the starter, the state machines and failure handling, read by the status and results functions (one
GetItem each). It also keeps the Connect rule failures' records and retry counters.

Every Python write to the table is here (tests/unit/test_tracker_model.py fails on any other), and every
write that changes a row's status is conditional, so a status only moves forward: a row is created RUNNING
only if absent, and leaves RUNNING once, for SUCCEEDED or FAILED (the state machines' ``Record*`` tasks carry
the same ``#status = :running`` condition). No write makes a final row RUNNING again. Reads return the item
as a dict (``TrackerRow.from_item`` types one): the poll path and the events read attributes by name.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from holdline.config import get_settings
from holdline.dal import aws
from holdline.models.tracker import RuleFailureStatus, TrackerRow, TrackerStatus, TrackerStep

#: Sparse by status: the sweeper queries RUNNING rows oldest first instead of scanning the table.
STATUS_INDEX = "StatusCreatedIndex"

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def _to_attributes(item: Mapping[str, Any]) -> dict[str, Any]:
    return {key: _serializer.serialize(value) for key, value in item.items()}


def _from_attributes(attributes: Mapping[str, Any]) -> dict[str, Any]:
    return {key: _deserializer.deserialize(value) for key, value in attributes.items()}


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _is_condition_failure(exc: ClientError) -> bool:
    return bool(exc.response["Error"]["Code"] == "ConditionalCheckFailedException")


def _put_new(item: Mapping[str, Any]) -> dict[str, Any] | None:
    """Write an item that must not exist yet. Returns None when this call created it, else the item that was
    already there (an idempotent retry, or a conflict the caller judges). One round trip either way: the
    failed condition hands the existing item back."""
    try:
        aws.call(
            "dynamodb",
            "put_item",
            TableName=get_settings().tracker_table_name,
            Item=_to_attributes(item),
            ConditionExpression="attribute_not_exists(trackerId)",
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )
    except ClientError as exc:
        if _is_condition_failure(exc):
            existing = exc.response.get("Item")
            # A retried PutItem whose first attempt landed fails its own condition: the item is ours.
            return _from_attributes(existing) if existing else get(str(item["trackerId"]), include_expired=True)
        raise
    return None


def _update(key: str, **request: Any) -> None:
    aws.call(
        "dynamodb",
        "update_item",
        TableName=get_settings().tracker_table_name,
        Key={"trackerId": {"S": key}},
        **request,
    )


def _conditional_update(key: str, **request: Any) -> bool:
    """An UpdateItem whose condition may fail: False when it did (someone else wrote first)."""
    try:
        _update(key, **request)
    except ClientError as exc:
        if _is_condition_failure(exc):
            return False
        raise
    return True


# ---- tracker rows ---------------------------------------------------------------------------------------------
def create(row: TrackerRow) -> dict[str, Any] | None:
    """Write a new tracker row (RUNNING, only if absent). Returns None when this call created it, else the row
    that was already there (an idempotent retry, or a conflict: the caller compares fingerprints)."""
    return _put_new(row.to_item())


def get(tracker_id: str, *, now: float | None = None, include_expired: bool = False) -> dict[str, Any] | None:
    """The row, read consistently; None if absent or past its TTL (DynamoDB deletes expired rows late)."""
    answer = aws.call(
        "dynamodb",
        "get_item",
        TableName=get_settings().tracker_table_name,
        Key={"trackerId": {"S": tracker_id}},
        ConsistentRead=True,
    )
    attributes = answer.get("Item")
    if not attributes:
        return None
    item = _from_attributes(attributes)
    expires_at = item.get("expiresAt")
    if (
        not include_expired
        and isinstance(expires_at, Decimal)
        and expires_at <= Decimal(str(now if now is not None else time.time()))
    ):
        return None
    return item


def mark_failed(
    tracker_id: str,
    error_name: str,
    source: str,
    execution_error: str | None = None,
    *,
    only_at_step: TrackerStep | None = None,
) -> bool:
    """RUNNING -> FAILED (step DONE), only if the row is still RUNNING; False if it was final already. Every
    retry and every racing writer (the saga, the reconciler, the sweeper, a redriven dead letter) moves a row
    to FAILED at most once, so the notifier announces it at most once. ``only_at_step``: and only if the row is
    still at that step (a row never started is failed only while no execution has recorded a step)."""
    values: dict[str, Any] = {
        ":running": {"S": TrackerStatus.RUNNING.value},
        ":failed": {"S": TrackerStatus.FAILED.value},
        ":done": {"S": TrackerStep.DONE.value},
        ":error": {"S": error_name},
        ":source": {"S": source},
        ":now": {"S": _now_iso()},
    }
    update = "SET #status = :failed, #step = :done, failureError = :error, failureSource = :source, updatedAt = :now"
    if execution_error:
        values[":executionError"] = {"S": execution_error[:256]}
        update += ", executionError = :executionError"
    condition = "attribute_exists(trackerId) AND #status = :running"
    if only_at_step is not None:
        values[":atStep"] = {"S": only_at_step.value}
        condition += " AND #step = :atStep"
    return _conditional_update(
        tracker_id,
        UpdateExpression=update,
        ConditionExpression=condition,
        ExpressionAttributeNames={"#status": "status", "#step": "step"},
        ExpressionAttributeValues=values,
    )


def record_outcome(
    tracker_id: str,
    *,
    status: TrackerStatus,
    source: str,
    failure_error: str | None = None,
    refunded: bool = False,
    confirmation_number: str | None = None,
) -> bool:
    """RUNNING -> the outcome the saga knew but could not write (its final write failed past its retries; the
    execution failed with TrackerNotRecorded and this outcome as its cause). Conditional as the saga's own final
    writes are; False if the row was final already."""
    values: dict[str, Any] = {
        ":running": {"S": TrackerStatus.RUNNING.value},
        ":final": {"S": status.value},
        ":done": {"S": TrackerStep.DONE.value},
        ":source": {"S": source},
        ":now": {"S": _now_iso()},
    }
    update = "SET #status = :final, #step = :done, failureSource = :source, updatedAt = :now"
    if status is TrackerStatus.SUCCEEDED:
        values[":confirmation"] = {"S": confirmation_number or ""}
        update += ", stepsDone = stepsTotal, confirmationNumber = :confirmation REMOVE failureError"
    else:
        values[":error"] = {"S": failure_error or "ExecutionFailed"}
        values[":refunded"] = {"BOOL": refunded}
        update += ", failureError = :error, refunded = :refunded"
    return _conditional_update(
        tracker_id,
        UpdateExpression=update,
        ConditionExpression="attribute_exists(trackerId) AND #status = :running",
        ExpressionAttributeNames={"#status": "status", "#step": "step"},
        ExpressionAttributeValues=values,
    )


def mark_notified(tracker_id: str, event_id: str) -> bool:
    """Record that the failure event went out; False if another delivery recorded it first."""
    return _conditional_update(
        tracker_id,
        UpdateExpression="SET failureNotifiedAt = :now, failureEventId = :id",
        ConditionExpression="attribute_exists(trackerId) AND attribute_not_exists(failureNotifiedAt)",
        ExpressionAttributeValues={":now": {"S": _now_iso()}, ":id": {"S": event_id}},
    )


def created_before(
    status: TrackerStatus, cutoff: int, page_size: int, start_key: Mapping[str, Any] | None = None
) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """Rows of ``status`` created before ``cutoff`` (epoch seconds), oldest first, ``page_size`` per Query of
    the sparse StatusCreatedIndex, from just after ``start_key`` (a position :func:`created_before` yielded).

    Yields each index item (keys and ``operation`` only: the index projects nothing else, so read the row by
    key for more) with its position: the item's table and index keys, the shape of a GSI Query's
    LastEvaluatedKey, which a later Query takes as its ExclusiveStartKey ("Paginating table query results",
    https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Query.Pagination.html; an index's start key
    needs both the table's and the index's keys, pynamodb/PynamoDB#50). A start key outside the key condition
    is refused by DynamoDB (ValidationException, aws/aws-sdk-ruby#2456): one with ``createdAt >= cutoff`` is
    dropped here and the Query starts from the oldest row."""
    request: dict[str, Any] = {
        "TableName": get_settings().tracker_table_name,
        "IndexName": STATUS_INDEX,
        "KeyConditionExpression": "#status = :status AND createdAt < :cutoff",
        "ExpressionAttributeNames": {"#status": "status"},
        "ExpressionAttributeValues": {":status": {"S": status.value}, ":cutoff": {"N": str(cutoff)}},
        "Limit": page_size,
        "ScanIndexForward": True,
    }
    if start_key and start_key.get("status") == status.value and Decimal(str(start_key["createdAt"])) < cutoff:
        request["ExclusiveStartKey"] = _to_attributes({name: start_key[name] for name in _POSITION})
    while True:
        answer = aws.call("dynamodb", "query", **request)
        for attributes in answer.get("Items", []):
            item = _from_attributes(attributes)
            yield item, {name: item[name] for name in _POSITION}
        if "LastEvaluatedKey" not in answer:
            return
        request["ExclusiveStartKey"] = answer["LastEvaluatedKey"]


#: A row's position in StatusCreatedIndex: the table's key and the index's keys.
_POSITION = ("trackerId", "status", "createdAt")
#: The sweeper's cursors (:mod:`holdline.logic.reconcile`) are kept in one item of this table. It has no
#: ``status``, so it is never in StatusCreatedIndex (sparse), and its key is no tracker id a starter makes.
SWEEP_CURSOR_ID = "sweeperCursor"


def sweep_cursor(name: str) -> dict[str, Any] | None:
    """Where the sweeper stopped in one partition (``name``) last time; None: start from the oldest row."""
    item = get(SWEEP_CURSOR_ID, include_expired=True) or {}
    position = item.get(f"{name}StartKey")
    return dict(position) if isinstance(position, Mapping) else None


def save_sweep_cursor(name: str, position: Mapping[str, Any] | None) -> None:
    """Keep where the sweeper stopped in one partition, or forget it (None: the next run starts from the
    oldest row). Forgetting never creates the item."""
    attribute = {"#position": f"{name}StartKey"}
    if position is not None:
        _update(
            SWEEP_CURSOR_ID,
            UpdateExpression="SET #position = :position, updatedAt = :now",
            ExpressionAttributeNames=attribute,
            ExpressionAttributeValues={":position": {"M": _to_attributes(position)}, ":now": {"S": _now_iso()}},
        )
    else:
        _conditional_update(
            SWEEP_CURSOR_ID,
            UpdateExpression="REMOVE #position",
            ConditionExpression="attribute_exists(#position)",
            ExpressionAttributeNames=attribute,
        )


# ---- Connect rule failures' records (holdline.dal.rule_failures names them) ------------------------------------
def create_rule_failure(item: Mapping[str, Any]) -> dict[str, Any] | None:
    """Keep a rule failure (status RECEIVED); return the record already there (a repeat delivery), else None."""
    return _put_new({**item, "status": RuleFailureStatus.RECEIVED.value})


def mark_rule_failure_handled(record_id: str, outcome: Mapping[str, str]) -> None:
    """RECEIVED -> HANDLED with the outcome: from now on a repeat delivery of the event is a duplicate."""
    _update(
        record_id,
        UpdateExpression="SET #status = :handled, outcome = :outcome, handledAt = :now",
        ConditionExpression="attribute_exists(trackerId)",
        ExpressionAttributeNames={"#status": "status"},
        ExpressionAttributeValues={
            ":handled": {"S": RuleFailureStatus.HANDLED.value},
            ":outcome": {"M": {key: {"S": value} for key, value in outcome.items()}},
            ":now": {"S": _now_iso()},
        },
    )


def take_rule_retry(counter_id: str, event_id: str, limit: int, expires_at: int) -> bool:
    """One of ``limit`` re-attempts on the counter, for this event: True if it has one (taken now, or by an
    earlier delivery of the same event), False if the budget is spent. The counter keeps the ids of the events
    that took it, so a retried delivery never takes a second one."""
    try:
        _update(
            counter_id,
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
        if not _is_condition_failure(exc):
            raise
        taken = exc.response.get("Item", {}).get("eventIds", {}).get("SS", [])
        return event_id in taken
    return limit > 0
