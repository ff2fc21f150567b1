"""Fake functions for driving the shipped flow through the simulator branch by branch (tests/unit/test_flow*.py).

Each function answers from a list (the last answer repeats); an exception answers as a Lambda "Unhandled"
error; :class:`Refuse` makes Lambda refuse the invocation. Every event is recorded.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

from holdline_local.flows import load_flow
from holdline_local.simulator import InvocationRefused, SimulatedCall
from tests.conftest import load_event

FLOW = load_flow()

CONFIG = {"language": "en-US", "greeting": "Welcome to Test Bank.", "holdPrompt": "Still working.", "found": "true"}
STARTED = {"status": "STARTED", "trackerId": "transfer-1", "nextPollSeconds": "3"}
RUNNING = {"status": "RUNNING", "step": "DEBITING", "keepWaiting": "true", "nextPollSeconds": "3"}
DONE = {"status": "SUCCEEDED", "step": "DONE", "keepWaiting": "false"}
SUCCEEDED = {"status": "SUCCEEDED", "confirmationNumber": "HL1", "amount": "250.00", "currency": "USD"}


class Refuse:
    """Lambda refuses the invocation (throttled, no permission): it never runs."""


class Functions:
    """Fake functions: each name answers from a list (the last answer repeats); records every event."""

    def __init__(self, **answers: Any) -> None:
        defaults: dict[str, Any] = {
            "ConfigLookupFunction": [CONFIG],
            "StarterFunction": [STARTED],
            "OutcomeWaiterFunction": [DONE],
            "StatusFunction": [RUNNING, DONE],
            "ResultsFunction": [SUCCEEDED],
        }
        defaults.update(answers)
        self.answers = {name: list(value) if isinstance(value, list) else [value] for name, value in defaults.items()}
        self.events: list[tuple[str, Mapping[str, Any]]] = []

    def __call__(self, function: str, event: Mapping[str, Any]) -> tuple[Any, str | None]:
        self.events.append((function, event))
        queue = self.answers[function]
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(answer, Refuse):
            raise InvocationRefused("TooManyRequestsException")
        if isinstance(answer, Exception):
            return {"errorType": type(answer).__name__, "errorMessage": str(answer)}, "Unhandled"
        return answer, None

    def dry_run(self, function: str) -> None:
        """Lambda's DryRun: would it run? (A refusal is the next answer; it is not consumed.)"""
        if isinstance(self.answers[function][0], Refuse):
            raise InvocationRefused("AccessDeniedException")

    def called(self, function: str) -> list[Mapping[str, Any]]:
        return [event for name, event in self.events if name == function]


#: The outcome waiter fails, so the flow falls back to its polling loop (status between hold prompts).
POLLING = {"OutcomeWaiterFunction": RuntimeError("waiter down")}


def call(functions: Functions, **options: Any) -> Any:
    options.setdefault("time_scale", 0)
    return SimulatedCall(functions, load_event("starter.json"), **options).run()


def action(flow: dict[str, Any], name: str) -> dict[str, Any]:
    return next(a for a in flow["Actions"] if a["Identifier"] == name)


def edited(edit: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    flow = copy.deepcopy(FLOW)
    edit(flow)
    return flow
