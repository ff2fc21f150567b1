"""Holdline's EventBridge bus: failure events for operators (and their webhooks, via rules)."""

from __future__ import annotations

import json
from typing import Any

from holdline.config import get_settings
from holdline.dal import aws

SOURCE = "holdline"
FAILURE_DETAIL_TYPE = "Holdline Task Failed"


class EventNotPublished(Exception):
    """PutEvents answered 200 but refused the entry (FailedEntryCount): raise so the caller's retry runs."""


def put_failure_event(detail: dict[str, Any], resources: list[str] | None = None) -> str:
    """Put one failure event on the bus; return its EventBridge id."""
    answer = aws.call(
        "events",
        "put_events",
        Entries=[
            {
                "Source": SOURCE,
                "DetailType": FAILURE_DETAIL_TYPE,
                "Detail": json.dumps(detail, sort_keys=True, separators=(",", ":")),
                "EventBusName": get_settings().event_bus_name,
                "Resources": resources or [],
            }
        ],
    )
    entry = answer["Entries"][0]
    # PutEvents is partially successful by design: a refused entry is in the 200 answer, not an exception.
    if answer.get("FailedEntryCount") or "EventId" not in entry:
        raise EventNotPublished(f"{entry.get('ErrorCode')}: {entry.get('ErrorMessage')}")
    return str(entry["EventId"])
