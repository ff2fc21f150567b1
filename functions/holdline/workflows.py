"""The workflow registry: an operation name maps to its request model, state machine and steps.

The starter, status and results functions are generic; a workflow plugs in here. The money transfer is the
first one; another long-running task registers itself the same way (see README, "Adding a workflow").
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from holdline.config import Settings
from holdline.models.tracker import TrackerStep
from holdline.observability import mask

if TYPE_CHECKING:
    from pydantic import BaseModel

    from holdline.models.follow_up import FollowUpRequest
    from holdline.models.requests import TransferRequest


@dataclass(frozen=True)
class Workflow:
    operation: str
    #: ``module:Class`` of the pydantic request model. Imported when a request is started, never at import:
    #: status, results and the outcome waiter read this registry and must not pay for pydantic.
    request_model_name: str
    #: Which setting holds the ARN of this workflow's state machine.
    state_machine_arn: Callable[[Settings], str]
    #: The steps the flow can report, in order, and how long each usually takes (seconds): the status
    #: answer's ``nextPollSeconds`` follows the step, so the caller is not polled faster than work moves.
    steps: Mapping[str, int]
    #: Facts safe to log or put in an event (masked), from the validated request.
    describe: Callable[[Any], dict[str, str]]
    #: Extra fields for the results answer on success, from the tracker row.
    success_fields: tuple[str, ...] = field(default=())
    #: Steps the state machine reports that are not counted in ``stepsTotal`` (checks before any work,
    #: compensation), with their usual duration for the same polling hint.
    uncounted_steps: Mapping[str, int] = field(default_factory=dict)

    @property
    def request_model(self) -> type[BaseModel]:
        module, _, name = self.request_model_name.partition(":")
        model: type[BaseModel] = getattr(importlib.import_module(module), name)
        return model

    @property
    def steps_total(self) -> int:
        return len(self.steps)

    def expected_seconds(self, step: str) -> int | None:
        return self.steps.get(step, self.uncounted_steps.get(step))


def _describe_transfer(request: TransferRequest) -> dict[str, str]:
    return {
        "fromAccount": mask(request.from_account),
        "toAccount": mask(request.to_account),
        "amount": str(request.amount),
        "currency": request.currency,
    }


TRANSFER = Workflow(
    operation="transfer",
    request_model_name="holdline.models.requests:TransferRequest",
    state_machine_arn=lambda settings: settings.transfer_state_machine_arn,
    steps={TrackerStep.DEBITING: 3, TrackerStep.CREDITING: 3, TrackerStep.CONFIRMING: 2},
    # Validation and the parallel pre-checks (fraud screening, daily limit) come before the first counted
    # step; a refund after a failed leg comes after. Both must match statemachines/transfer.asl.json.
    uncounted_steps={TrackerStep.VALIDATING: 2, TrackerStep.REFUNDING: 3},
    describe=_describe_transfer,
    success_fields=("confirmationNumber", "amount", "currency"),
)


def _describe_follow_up(request: FollowUpRequest) -> dict[str, str]:
    return {"reason": request.reason, "relatedTrackerId": request.related_tracker_id or ""}


FOLLOW_UP = Workflow(
    operation="followUp",
    request_model_name="holdline.models.follow_up:FollowUpRequest",
    state_machine_arn=lambda settings: settings.follow_up_state_machine_arn,
    steps={TrackerStep.CREATING_TASK: 2},
    describe=_describe_follow_up,
    success_fields=("taskContactId",),
)

REGISTRY: dict[str, Workflow] = {workflow.operation: workflow for workflow in (TRANSFER, FOLLOW_UP)}
DEFAULT_OPERATION = TRANSFER.operation


def get_workflow(operation: str) -> Workflow | None:
    return REGISTRY.get(operation)
