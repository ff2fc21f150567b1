"""The tracker table: one row per long-running request, written by the starter and the state machine,
read by the status and results functions (one GetItem each)."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from holdline.config import get_settings
from holdline.dal import aws

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def _to_attributes(item: dict[str, Any]) -> dict[str, Any]:
    return {key: _serializer.serialize(value) for key, value in item.items()}


def _from_attributes(attributes: dict[str, Any]) -> dict[str, Any]:
    return {key: _deserializer.deserialize(value) for key, value in attributes.items()}


def create(item: dict[str, Any]) -> dict[str, Any] | None:
    """Write a new tracker row. Returns None when this call created it, else the row that was already there
    (an idempotent retry, or a conflict: the caller compares fingerprints). One round trip either way:
    the failed condition hands the existing row back."""
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
        if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
            existing = exc.response.get("Item")
            # A retried PutItem whose first attempt landed fails its own condition: the row is ours.
            return _from_attributes(existing) if existing else get(str(item["trackerId"]), include_expired=True)
        raise
    return None


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
