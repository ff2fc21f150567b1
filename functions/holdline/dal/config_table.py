"""The line configuration table: one item per dialed number (``configKey``), plus a ``default`` item."""

from __future__ import annotations

import os
from typing import Any

from boto3.dynamodb.types import TypeDeserializer

from holdline.dal.aws import client

_deserializer = TypeDeserializer()


def table_name() -> str:
    # Read per call, not cached: the only setting this module has, and tests point it at other tables.
    return os.environ.get("CONFIG_TABLE_NAME", "ConfigTable")


def get(config_key: str) -> dict[str, Any] | None:
    """One GetItem (eventually consistent: configuration changes rarely and a stale read is harmless)."""
    answer = client("dynamodb").get_item(TableName=table_name(), Key={"configKey": {"S": config_key}})
    attributes = answer.get("Item")
    if not attributes:
        return None
    return {key: _deserializer.deserialize(value) for key, value in attributes.items()}
