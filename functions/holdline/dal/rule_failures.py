"""Connect rule failures' rows in the tracker table: one record per EventBridge event (``connectRuleFailure-…``)
and one retry counter per rule and UTC day (``connectRuleRetries-…``).

Every write is conditional, so Lambda's retries of the same event (and a redrive from its dead-letter queue)
change nothing twice: a record becomes HANDLED once, after its work; an event takes its rule's budget once.
The writes themselves are in :mod:`holdline.dal.tracker_table`, with every other write to the table.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from holdline.dal import tracker_table
from holdline.models.tracker import RuleFailureStatus

RECEIVED = RuleFailureStatus.RECEIVED.value
HANDLED = RuleFailureStatus.HANDLED.value


def record_id(event_id: str) -> str:
    return "connectRuleFailure-" + hashlib.sha256(event_id.encode()).hexdigest()[:32]


def record(item: Mapping[str, Any]) -> dict[str, Any] | None:
    """Keep the failure (status RECEIVED); return the record already there (a repeat delivery), else None."""
    return tracker_table.create_rule_failure(item)


def mark_handled(tracker_id: str, outcome: Mapping[str, str]) -> None:
    """RECEIVED -> HANDLED with the outcome: from now on a repeat delivery of the event is a duplicate."""
    tracker_table.mark_rule_failure_handled(tracker_id, outcome)


def take_retry_budget(rule_id: str, day: str, event_id: str, limit: int, expires_at: int) -> bool:
    """One of the rule's ``limit`` re-attempts for ``day``, for this event: True if it has one (taken now, or by
    an earlier delivery of the same event), False if the day's budget is spent."""
    return tracker_table.take_rule_retry(f"connectRuleRetries-{rule_id}-{day}", event_id, limit, expires_at)
