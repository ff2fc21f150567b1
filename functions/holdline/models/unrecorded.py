"""The outcome a saga could not write to its tracker row: the cause of its ``TrackerNotRecorded`` failure
(statemachines/transfer.asl.json, the ``*NotRecorded`` Pass states). The reconciler and the sweeper read it back
before writing anything: a cause that is not this shape is not trusted as an outcome."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class UnrecordedOutcome(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    tracker_id: str = Field(alias="trackerId", min_length=1, max_length=80)
    status: Literal["SUCCEEDED", "FAILED"]
    failure_error: str | None = Field(default=None, alias="failureError", max_length=256)
    refunded: bool = False
    confirmation_number: str | None = Field(default=None, alias="confirmationNumber", max_length=64)
