"""The moto adapter against the pinned moto: handlers really run, errors carry their class name, time is
scaled, and a moto upgrade that moves these hooks fails here first."""

from __future__ import annotations

import json
import threading
import time
import tomllib
from pathlib import Path
from typing import Any

import moto
import pytest

from holdline_local import moto_adapter
from holdline_local.stack import LocalStack

REPO = Path(__file__).resolve().parents[2]


def test_pinned_moto_is_the_one_running() -> None:
    pins = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["dev"]
    (moto_pin,) = [p for p in pins if p.startswith("moto")]
    assert moto_pin.endswith("==" + moto.__version__)


def test_lambda_invoke_runs_the_real_handler(stack: LocalStack) -> None:
    answer = stack.invoke("StatusFunction", {"Details": {"ContactData": {"ContactId": "c"}, "Parameters": {}}})
    assert answer["status"] == "NOT_FOUND"  # moto's own backend would have echoed the event back


def test_exception_becomes_unhandled_error_named_after_its_class(stack: LocalStack) -> None:
    answer = stack.client("lambda").invoke(FunctionName="DebitFunction", Payload=b'{"trackerId": "transfer-none"}')
    assert answer["FunctionError"] == "Unhandled"
    assert json.loads(answer["Payload"].read())["errorType"] == "TrackerNotFound"


def test_unknown_function_is_not_found(stack: LocalStack) -> None:
    with pytest.raises(stack.client("lambda").exceptions.ResourceNotFoundException):
        stack.client("lambda").invoke(FunctionName="NoSuchFunction", Payload=b"{}")


def test_wait_state_and_retry_intervals_are_scaled(stack: LocalStack) -> None:
    """A 30 s Wait and a retry with 20 s intervals finish in well under a second at time scale 0.01."""
    sfn = stack.client("stepfunctions")
    definition = {
        "StartAt": "Wait",
        "States": {
            "Wait": {"Type": "Wait", "Seconds": 30, "Next": "Fail"},
            "Fail": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": stack.arn("DebitFunction"), "Payload": {"trackerId": "transfer-none"}},
                "Retry": [{"ErrorEquals": ["TrackerNotFound"], "IntervalSeconds": 20, "MaxAttempts": 2}],
                "End": True,
            },
        },
    }
    arn = sfn.create_state_machine(
        name="AdapterTimeScale", definition=json.dumps(definition), roleArn="arn:aws:iam::123456789012:role/x"
    )["stateMachineArn"]
    before = stack.dispatcher.invocations.get("DebitFunction", 0)
    started = time.monotonic()
    execution = sfn.start_execution(stateMachineArn=arn, name="scaled")["executionArn"]
    while sfn.describe_execution(executionArn=execution)["status"] == "RUNNING":
        assert time.monotonic() - started < 20, "time scale not applied"
        time.sleep(0.02)
    described = sfn.describe_execution(executionArn=execution)
    assert described["status"] == "FAILED" and described["error"] == "TrackerNotFound"
    # Counted in this execution's history: executions other tests started may still be calling DebitFunction.
    events = sfn.get_execution_history(executionArn=execution)["events"]
    assert sum(e["type"] == "TaskScheduled" for e in events) == 3  # first try + 2 retries
    assert stack.dispatcher.invocations["DebitFunction"] - before >= 3
    assert time.monotonic() - started < 20


def test_task_timeouts_scale_separately_and_the_task_keeps_running(stack: LocalStack) -> None:
    """A task with TimeoutSeconds 10 times out after ~1 s at task timeout scale 0.1, with States.Timeout;
    the handler it called goes on (a task timeout does not stop the Lambda) and its work still lands."""
    sfn = stack.client("stepfunctions")
    definition = {
        "StartAt": "Slow",
        "States": {
            "Slow": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": stack.arn("DebitFunction"), "Payload": {"trackerId": "transfer-none"}},
                "TimeoutSeconds": 10,
                "End": True,
            },
        },
    }
    arn = sfn.create_state_machine(
        name="AdapterTaskTimeout", definition=json.dumps(definition), roleArn="arn:aws:iam::123456789012:role/x"
    )["stateMachineArn"]
    handler_done = threading.Event()
    original = stack.dispatcher._handler_for

    def slow_handler(function: moto_adapter.LocalFunction) -> Any:
        real = original(function)

        def run(event: Any, context: Any) -> Any:
            time.sleep(2.0)
            try:
                return real(event, context)
            finally:
                handler_done.set()

        return run

    with pytest.raises(ValueError):
        moto_adapter.set_task_timeout_scale(0)
    previous = moto_adapter.set_task_timeout_scale(0.1)
    stack.dispatcher._handler_for = slow_handler  # type: ignore[method-assign]
    try:
        started = time.monotonic()
        execution = sfn.start_execution(stateMachineArn=arn, name="task-timeout")["executionArn"]
        while sfn.describe_execution(executionArn=execution)["status"] == "RUNNING":
            assert time.monotonic() - started < 8
            time.sleep(0.02)
        elapsed = time.monotonic() - started
        described = sfn.describe_execution(executionArn=execution)
        assert described["status"] == "FAILED" and described["error"] == "States.Timeout"
        assert 0.9 < elapsed < 2.0, elapsed  # 10 s x 0.1, and before the handler's 2 s were up
        assert not handler_done.is_set()
        assert handler_done.wait(5), "the handler was stopped by the task timeout"
    finally:
        stack.dispatcher._handler_for = original  # type: ignore[method-assign]
        moto_adapter.set_task_timeout_scale(previous)
    assert moto_adapter.task_timeout_scale() == previous


def test_shared_environment_conflicts_are_refused() -> None:
    assert moto_adapter.environment_union({"A": {"X": "1"}, "B": {"X": "1", "Y": "2"}}) == {"X": "1", "Y": "2"}
    with pytest.raises(ValueError, match="set X differently"):
        moto_adapter.environment_union({"A": {"X": "1"}, "B": {"X": "2"}})


def test_names_follow_logical_ids(stack: LocalStack) -> None:
    assert stack.arn("TransferStateMachine").endswith(":stateMachine:TransferStateMachine")
    assert stack.client("dynamodb").describe_table(TableName="TrackerTable")["Table"]["TableName"] == "TrackerTable"
    ttl = stack.client("dynamodb").describe_time_to_live(TableName="TrackerTable")["TimeToLiveDescription"]
    assert ttl["AttributeName"] == "expiresAt"
