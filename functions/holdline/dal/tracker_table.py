"""The tracker table: one row per long-running request, written by the starter and the state machine,
read by the status and results functions (one GetItem each)."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from holdline.config import get_settings
from holdline.dal.aws import client

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def _to_attributes(item: dict[str, Any]) -> dict[str, Any]:
    return {key: _serializer.serialize(value) for key, value in item.items()}


def create(item: dict[str, Any]) -> bool:
    """Write a new tracker row; False when a row with that id already exists (an idempotent retry)."""
    try:
        client("dynamodb").put_item(
            TableName=get_settings().tracker_table_name,
            Item=_to_attributes(item),
            ConditionExpression="attribute_not_exists(trackerId)",
        )
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
            return False
        raise
    return True


def get(tracker_id: str, *, now: float | None = None) -> dict[str, Any] | None:
    """The row, read consistently; None if absent or past its TTL (DynamoDB deletes expired rows late)."""
    answer = client("dynamodb").get_item(
        TableName=get_settings().tracker_table_name,
        Key={"trackerId": {"S": tracker_id}},
        ConsistentRead=True,
    )
    attributes = answer.get("Item")
    if not attributes:
        return None
    item = {key: _deserializer.deserialize(value) for key, value in attributes.items()}
    expires_at = item.get("expiresAt")
    if isinstance(expires_at, Decimal) and expires_at <= Decimal(str(now if now is not None else time.time())):
        return None
    return item
