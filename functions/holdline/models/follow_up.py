"""The follow-up request: a task for an agent when automation could not finish the job.

Started from a flow (the caller asks for a callback) through the same starter as a transfer, with
``operation=followUp``, or by Holdline itself when a transfer ends in a state that needs a person.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

FollowUpReason = Literal[
    "CALLBACK_REQUESTED", "REFUND_PENDING", "OUTCOME_UNCONFIRMED", "CALLER_HUNG_UP", "HELD_FOR_REVIEW", "RULE_RETRY"
]
TRACKER_ID_PATTERN = r"^[A-Za-z0-9-]{1,80}$"
_TRACKER_ID = re.compile(r"[A-Za-z0-9-]{1,80}", re.ASCII)


class FollowUpRequest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    reason: FollowUpReason = "CALLBACK_REQUESTED"
    related_tracker_id: str | None = Field(default=None, alias="relatedTrackerId")
    #: Seconds to wait before creating the task (Connect's ``retryDelay`` for a failed rule action).
    delay_seconds: int = Field(default=0, alias="delaySeconds", ge=0, le=3600)
    #: Facts for the agent; never account or phone numbers (they are masked by whoever builds this).
    summary: str = Field(default="", max_length=1000)

    @field_validator("reason", mode="before")
    @classmethod
    def _reason(cls, value: Any) -> Any:
        if value in (None, ""):
            return "CALLBACK_REQUESTED"
        if value not in FollowUpReason.__args__:  # type: ignore[attr-defined]
            raise PydanticCustomError("INVALID_PARAMETER", "That follow-up reason is not supported.")
        return value

    @field_validator("related_tracker_id", mode="before")
    @classmethod
    def _tracker(cls, value: Any) -> Any:
        if value in (None, ""):
            return None
        if not isinstance(value, str) or not _TRACKER_ID.fullmatch(value):
            raise PydanticCustomError("INVALID_PARAMETER", "The related request reference is not valid.")
        return value

    def fingerprint(self) -> str:
        canonical = json.dumps(self.to_item(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def to_item(self) -> dict[str, Any]:
        item: dict[str, Any] = {"reason": self.reason, "delaySeconds": self.delay_seconds}
        if self.related_tracker_id:
            item["relatedTrackerId"] = self.related_tracker_id
        if self.summary:
            item["summary"] = self.summary
        return item
