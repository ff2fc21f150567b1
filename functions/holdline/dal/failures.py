"""Tracker writes and reads for failure handling: conditional, so every retry and every racing writer (the
saga, the reconciler, the sweeper, a redriven dead letter) moves a row to FAILED at most once and announces
it at most once."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from boto3.dynamodb.types import TypeDeserializer
from botocore.exceptions import ClientError

from holdline.config import get_settings
from holdline.dal import aws

#: Sparse by status: the sweeper queries RUNNING rows oldest first instead of scanning the table.
STATUS_INDEX = "StatusCreatedIndex"

_deserializer = TypeDeserializer()


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _conditional(**request: Any) -> bool:
    try:
        aws.call("dynamodb", "update_item", TableName=get_settings().tracker_table_name, **request)
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
            return False
        raise
    return True


def mark_failed(tracker_id: str, error_name: str, source: str, execution_error: str | None = None) -> bool:
    """RUNNING -> FAILED (step DONE), only if the row is still RUNNING; False if it was final already."""
    values: dict[str, Any] = {
        ":running": {"S": "RUNNING"},
        ":failed": {"S": "FAILED"},
        ":done": {"S": "DONE"},
        ":error": {"S": error_name},
        ":source": {"S": source},
        ":now": {"S": _now_iso()},
    }
    update = "SET #status = :failed, #step = :done, failureError = :error, failureSource = :source, updatedAt = :now"
    if execution_error:
        values[":executionError"] = {"S": execution_error[:256]}
        update += ", executionError = :executionError"
    return _conditional(
        Key={"trackerId": {"S": tracker_id}},
        UpdateExpression=update,
        ConditionExpression="attribute_exists(trackerId) AND #status = :running",
        ExpressionAttributeNames={"#status": "status", "#step": "step"},
        ExpressionAttributeValues=values,
    )


def mark_notified(tracker_id: str, event_id: str) -> bool:
    """Record that the failure event went out; False if another delivery recorded it first."""
    return _conditional(
        Key={"trackerId": {"S": tracker_id}},
        UpdateExpression="SET failureNotifiedAt = :now, failureEventId = :id",
        ConditionExpression="attribute_exists(trackerId) AND attribute_not_exists(failureNotifiedAt)",
        ExpressionAttributeValues={":now": {"S": _now_iso()}, ":id": {"S": event_id}},
    )


def running_created_before(cutoff: int, page_size: int) -> Iterator[dict[str, Any]]:
    """RUNNING rows created before ``cutoff`` (epoch seconds), oldest first, ``page_size`` per Query."""
    request: dict[str, Any] = {
        "TableName": get_settings().tracker_table_name,
        "IndexName": STATUS_INDEX,
        "KeyConditionExpression": "#status = :running AND createdAt < :cutoff",
        "ExpressionAttributeNames": {"#status": "status"},
        "ExpressionAttributeValues": {":running": {"S": "RUNNING"}, ":cutoff": {"N": str(cutoff)}},
        "Limit": page_size,
        "ScanIndexForward": True,
    }
    while True:
        answer = aws.call("dynamodb", "query", **request)
        for item in answer.get("Items", []):
            yield {key: _deserializer.deserialize(value) for key, value in item.items()}
        if "LastEvaluatedKey" not in answer:
            return
        request["ExclusiveStartKey"] = answer["LastEvaluatedKey"]
