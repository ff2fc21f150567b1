"""Amazon Connect's "Rules Action Execution Failed" event, as Powertools' parser reads it.

The envelope is Powertools' EventBridge model (``version``, ``id``, ``source``, ``time``, ``resources``,
``detail-type``...); the ``detail`` is Connect's notification (admin guide, "Rules action error
notifications"): ``ruleId``, ``actionType``, ``triggerEvent``, ``instanceArn``, ``reasonCode``, ``error``, and
``additionalInfo`` with ``retryable`` and ``retryDelay``, which arrives as a JSON string in Connect's sample and
as an object elsewhere: both are read.
"""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from holdline.errors import RequestRejected

#: Connect's ``retryDelay`` is honoured up to an hour (the follow-up workflow's Wait).
MAX_RETRY_DELAY_SECONDS = 3600


class RuleActionFailure(BaseModel):
    """``detail`` of Connect's "Rules Action Execution Failed" event."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    rule_id: str = Field(alias="ruleId", min_length=1, max_length=256)
    action_type: str = Field(alias="actionType", min_length=1, max_length=64)
    trigger_event: str = Field(default="", alias="triggerEvent", max_length=256)
    instance_arn: str = Field(default="", alias="instanceArn", max_length=256)
    reason_code: str = Field(default="Unknown", alias="reasonCode", max_length=256)
    error: str = Field(default="", max_length=4096)
    retryable: bool = False
    retry_delay_seconds: int = Field(default=0, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _additional_info(cls, value: Any) -> Any:
        """``additionalInfo`` (a JSON string or an object; anything else counts as absent) -> ``retryable``
        and ``retry_delay_seconds``."""
        if not isinstance(value, dict) or "additionalInfo" not in value:
            return value
        info = value.get("additionalInfo") or {}
        if isinstance(info, str):
            try:
                info = json.loads(info)
            except json.JSONDecodeError:
                info = {}
        info = info if isinstance(info, dict) else {}
        retryable = info.get("retryable", False)
        try:
            delay = max(0, int(float(info.get("retryDelay", 0))))
        except (TypeError, ValueError):
            delay = 0
        return {
            **value,
            "retryable": retryable is True or str(retryable).lower() == "true",
            "retry_delay_seconds": delay,
        }

    @field_validator("retry_delay_seconds", mode="before")
    @classmethod
    def _cap(cls, value: Any) -> Any:
        return min(int(value), MAX_RETRY_DELAY_SECONDS) if isinstance(value, int | float | str) else value


class RuleActionFailedEvent(EventBridgeModel):
    """The whole EventBridge event, for ``event_parser``."""

    detail: RuleActionFailure


def parse_rule_failure(detail: Any) -> RuleActionFailure:
    """The ``detail`` alone (tests and tools); the function parses the whole event."""
    if not isinstance(detail, dict):
        raise RequestRejected("INVALID_EVENT", "detail is not an object")
    return RuleActionFailure.model_validate(detail)
