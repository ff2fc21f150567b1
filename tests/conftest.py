"""Shared fixtures: a Lambda context, Connect events built from events/, and one embedded local stack per
test session (moto server + Step Functions executor + sandbox bank, built from template.yaml)."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from holdline_local.stack import LocalStack

REPO = Path(__file__).resolve().parent.parent
EVENTS = REPO / "events"


class FakeLambdaContext:
    function_version = "$LATEST"
    memory_limit_in_mb = 512
    aws_request_id = "11111111-2222-3333-4444-555555555555"
    log_stream_name = "test"

    def __init__(self, function_name: str = "test-function") -> None:
        self.function_name = function_name
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{function_name}"
        self.log_group_name = f"/aws/lambda/{function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return 5000


@pytest.fixture
def lambda_context() -> FakeLambdaContext:
    return FakeLambdaContext()


def load_event(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return event


EventFactory = Callable[..., dict[str, Any]]


@pytest.fixture
def connect_event() -> EventFactory:
    """A ContactFlowEvent like events/starter.json with a fresh ContactId (each test is a new call)."""

    def make(
        parameters: dict[str, Any] | None = None, *, attributes: dict[str, Any] | None = None, contact_id: str = ""
    ) -> dict[str, Any]:
        event = copy.deepcopy(load_event("starter.json"))
        contact = event["Details"]["ContactData"]
        contact["ContactId"] = contact["InitialContactId"] = contact_id or str(uuid.uuid4())
        if parameters is not None:
            event["Details"]["Parameters"] = parameters
        if attributes is not None:
            contact["Attributes"] = {**contact["Attributes"], **attributes}
        return event

    return make


Handler = Callable[[dict[str, Any], Any], Any]
Call = Callable[..., Any]


@pytest.fixture
def call(stack: LocalStack) -> Call:
    """Run a handler in this process as its function would run: ``call(starter.handler, event)`` finds the
    function whose Handler it is in template.yaml and runs it with that function's variables (and no other
    function's) and its role's credentials. For tests that inject faults into a handler's own clients; to run
    a function as Lambda does, invoke it through the stack (``stack.invoke``)."""

    def run(handler: Handler, event: dict[str, Any], context: Any = None, environment: Any = None) -> Any:
        function = function_of(stack, handler)
        with stack.as_function(function, environment):
            return handler(event, context if context is not None else FakeLambdaContext(function))

    return run


def function_of(stack: LocalStack, handler: Handler) -> str:
    import importlib

    assert stack.stack is not None
    for spec in stack.stack.functions.values():
        module, _, attribute = spec.handler.rpartition(".")
        if getattr(importlib.import_module(module), attribute, None) is handler:
            return spec.logical_id
    raise LookupError(f"{handler} is no function's Handler in template.yaml")


@pytest.fixture(scope="session")
def stack() -> Iterator[LocalStack]:
    # INFO so that tests can read what the functions log (and check what they must not log).
    with LocalStack(time_scale=0.01, log_level="INFO") as local:
        yield local


pytest_plugins = ["tests.probes"]
