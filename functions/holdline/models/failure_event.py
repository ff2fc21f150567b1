"""A ``Holdline Task Failed`` event (docs/failure-events.md) as the follow-up trigger reads it with Powertools'
parser: the EventBridge envelope, and of the detail what a follow-up needs. Imported by the trigger only (the
parser's models are not for the Connect-facing functions' cold start)."""

from __future__ import annotations

from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from pydantic import BaseModel, ConfigDict, Field

from holdline.models.follow_up import TRACKER_ID_PATTERN


class FailureEventDetail(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    tracker_id: str = Field(alias="trackerId", pattern=TRACKER_ID_PATTERN)
    reason_code: str = Field(alias="reasonCode", min_length=1, max_length=64)
    contact_id: str = Field(default="", alias="contactId", max_length=256)
    instance_arn: str = Field(default="", alias="instanceArn", max_length=256)


class FailureEvent(EventBridgeModel):
    """The whole EventBridge event, for ``event_parser``."""

    detail: FailureEventDetail
