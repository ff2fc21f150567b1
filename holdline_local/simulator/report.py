"""What a simulated call reports: every step (invocation, prompt, wait, result load) and the caller's path."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Step:
    at: float  # seconds since the call began on the CALLER's clock (prompts count in full, whatever the time scale)
    kind: str  # "invoke" | "prompt" | "wait" | "load"
    name: str  # the function's logical ID, the prompt's text, or the Wait's outcome (LambdaReturned, ...)
    action: str = ""  # the flow action's Identifier
    duration_ms: float = 0.0  # for an asynchronous invoke: 0 (the flow moved on); its run shows on the load
    answer: Mapping[str, Any] | None = None
    branch: str = ""  # "Success" | "Error" | "Started" (an asynchronous invoke)
    note: str = ""
    attempts: int = 1
    limit_ms: float = 0.0
    real_at: float | None = None  # seconds since the call began on this machine's clock (the saga's clock)
    init_ms: float | None = None  # the invocation started a new execution environment: its Init Duration


@dataclass
class CallReport:
    contact_id: str
    steps: list[Step] = field(default_factory=list)
    path: list[str] = field(default_factory=list)  # every action the caller went through, in order
    # The flow's holdlineOutcome: SUCCEEDED, FAILED, UNCONFIRMED, REJECTED, NOT_STARTED, START_UNKNOWN, ERROR_BRANCH,
    # HOLD_EXCEEDED.
    outcome: str = ""
    error_code: str = ""
    ending: str = ""  # DISCONNECTED | QUEUED_FOR_AGENT | CALLBACK_CREATED
    caller_hears: str = ""
    tracker_id: str = ""
    error_branches: list[str] = field(default_factory=list)  # "<action>: <reason>" for every Error branch taken
    attributes: dict[str, str] = field(default_factory=dict)

    @property
    def completed(self) -> bool:
        """The call reached a final outcome through the flow's normal path (no Error branch, not stuck)."""
        return self.outcome in {"SUCCEEDED", "FAILED", "UNCONFIRMED", "REJECTED"}

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["completed"] = self.completed
        data["invocations"] = sum(1 for step in self.steps if step.kind == "invoke")
        return data


def invoked_functions(steps: Iterable[Step]) -> list[str]:
    """Every function invoked, in order (synchronous and asynchronous)."""
    return [step.name for step in steps if step.kind == "invoke"]
