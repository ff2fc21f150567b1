"""The tracker row: one per long-running request, the single source of truth the flow's polls read.

Written by the starter (created RUNNING at STARTED), by the state machines' ``Record*`` tasks (each step, then
SUCCEEDED or FAILED at DONE) and by failure handling (RUNNING -> FAILED); every Python write goes through
:mod:`holdline.dal.tracker_table`. Plain dataclasses and enums: the Connect-facing starter builds one on the
caller's line and must not import pydantic.

The enum values are the strings stored in DynamoDB (and written by statemachines/*.asl.json):
tests/unit/test_tracker_model.py ties both state machines and the workflow registry to them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any


class TrackerStatus(StrEnum):
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES


#: A row never leaves these: every write that sets a status is conditional on RUNNING.
FINAL_STATUSES = frozenset({TrackerStatus.SUCCEEDED, TrackerStatus.FAILED})


class TrackerStep(StrEnum):
    #: Written by the starter: the execution has not recorded a step yet.
    STARTED = "STARTED"
    # The transfer (statemachines/transfer.asl.json); VALIDATING and REFUNDING are uncounted steps.
    VALIDATING = "VALIDATING"
    DEBITING = "DEBITING"
    CREDITING = "CREDITING"
    CONFIRMING = "CONFIRMING"
    REFUNDING = "REFUNDING"
    # The follow-up (statemachines/follow_up.asl.json).
    CREATING_TASK = "CREATING_TASK"
    #: Every final status comes with this step.
    DONE = "DONE"


class RuleFailureStatus(StrEnum):
    """The other records in the tracker table: a Connect rule failure is RECEIVED, then HANDLED after its work
    (:mod:`holdline.dal.rule_failures`). Never a tracker row's status."""

    RECEIVED = "RECEIVED"
    HANDLED = "HANDLED"


#: The attribute names of a row, in the dataclass's field order (``extra`` keeps any other attribute).
_ATTRIBUTES = {
    "tracker_id": "trackerId",
    "operation": "operation",
    "status": "status",
    "step": "step",
    "steps_done": "stepsDone",
    "steps_total": "stepsTotal",
    "contact_id": "contactId",
    "instance_arn": "instanceArn",
    "request_id": "requestId",
    "request_fingerprint": "requestFingerprint",
    "request": "request",
    "execution_name": "executionName",
    "created_at": "createdAt",
    "expires_at": "expiresAt",
    "updated_at": "updatedAt",
    "confirmation_number": "confirmationNumber",
    "task_contact_id": "taskContactId",
    "refunded": "refunded",
    "failure_error": "failureError",
    "refund_error": "refundError",
    "failure_source": "failureSource",
    "execution_error": "executionError",
    "failure_notified_at": "failureNotifiedAt",
    "failure_event_id": "failureEventId",
}
_INTEGERS = frozenset({"steps_done", "steps_total", "created_at", "expires_at"})


@dataclass(frozen=True)
class TrackerRow:
    tracker_id: str
    operation: str
    status: TrackerStatus
    step: TrackerStep
    steps_done: int
    steps_total: int
    contact_id: str
    instance_arn: str
    request_id: str
    request_fingerprint: str
    #: The claim check: what the workflow's legs read (strings, never floats).
    request: Mapping[str, Any]
    #: The execution is named after the tracker (the starter's deterministic id).
    execution_name: str
    #: Epoch seconds; ``expires_at`` is the table's TTL attribute.
    created_at: int
    expires_at: int
    # Written later, by the state machine (ISO 8601 EnteredTime, results) or by failure handling.
    updated_at: str | None = None
    confirmation_number: str | None = None
    task_contact_id: str | None = None
    refunded: bool | None = None
    failure_error: str | None = None
    #: Why the refund could not be made, on a REFUND_PENDING row (the error of its last attempt).
    refund_error: str | None = None
    failure_source: str | None = None
    execution_error: str | None = None
    failure_notified_at: str | None = None
    failure_event_id: str | None = None
    #: Attributes this model does not name, kept so a read and a write lose nothing.
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def new(
        cls,
        *,
        tracker_id: str,
        operation: str,
        steps_total: int,
        contact_id: str,
        instance_arn: str,
        request_id: str,
        request_fingerprint: str,
        request: Mapping[str, Any],
        started_at: float,
        ttl_days: int,
    ) -> TrackerRow:
        """The row a request starts with: RUNNING at STARTED, nothing done, named execution, TTL from now."""
        created_at = int(started_at)
        return cls(
            tracker_id=tracker_id,
            operation=operation,
            status=TrackerStatus.RUNNING,
            step=TrackerStep.STARTED,
            steps_done=0,
            steps_total=steps_total,
            contact_id=contact_id,
            instance_arn=instance_arn,
            request_id=request_id,
            request_fingerprint=request_fingerprint,
            request=dict(request),
            execution_name=tracker_id,
            created_at=created_at,
            expires_at=created_at + ttl_days * 86400,
        )

    def to_item(self) -> dict[str, Any]:
        """The DynamoDB item (plain Python values for TypeSerializer): unset optional attributes are absent."""
        item: dict[str, Any] = {}
        for name, attribute in _ATTRIBUTES.items():
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, StrEnum):
                value = value.value
            elif name == "request":
                value = dict(value)
            item[attribute] = value
        for attribute, value in self.extra.items():
            item.setdefault(attribute, value)
        return item

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> TrackerRow:
        """A row as read (numbers arrive as Decimal). Raises ValueError for a status or step no writer uses."""
        known = set(_ATTRIBUTES.values())
        values: dict[str, Any] = {}
        for name, attribute in _ATTRIBUTES.items():
            if attribute not in item:
                continue
            value = item[attribute]
            if name in _INTEGERS and isinstance(value, Decimal | int):
                value = int(value)
            values[name] = value
        values["status"] = TrackerStatus(values["status"])
        values["step"] = TrackerStep(values.get("step", TrackerStep.STARTED))
        # Rows older than the registry carry no operation: they are transfers (as the sweeper assumes).
        values.setdefault("operation", "transfer")
        values.setdefault("execution_name", values["tracker_id"])
        for name in ("steps_done", "steps_total", "created_at", "expires_at"):
            values.setdefault(name, 0)
        for name in ("contact_id", "instance_arn", "request_id", "request_fingerprint"):
            values.setdefault(name, "")
        values.setdefault("request", {})
        values["extra"] = {key: value for key, value in item.items() if key not in known}
        return cls(**values)


__all__ = ["FINAL_STATUSES", "RuleFailureStatus", "TrackerRow", "TrackerStatus", "TrackerStep"]
