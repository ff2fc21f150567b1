"""The local Step Functions engine is as strict as AWS about errors no Catch or Retry may handle.

Step Functions developer guide, "Handling errors in Step Functions workflows"
(https://docs.aws.amazon.com/step-functions/latest/dg/concepts-error-handling.html): ``States.ALL`` "can't catch
the States.DataLimitExceeded terminal error type and runtime error types"; a ``States.Runtime`` error (a path that
does not resolve, for one) "isn't retriable, and will always cause the execution to fail". moto's executor caught
both with ``States.ALL`` and took a Choice's ``Default`` on a missing ``Variable``: a test of a saga whose leg
answer lacked a field would have shown a refund where AWS fails the execution with the debit made.

Each definition below is tiny and runs on the local stack; the Catch/Retry on ``States.ALL`` is what must NOT
take the error.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from holdline_local.stack import LocalStack
from tests.probes import Deploy, invoke_role, run_state_machine

CATCH_ALL = [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.failure", "Next": "Caught"}]
RETRY_ALL = [{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 1, "MaxAttempts": 2}]
CAUGHT = {"Type": "Pass", "End": True}


def _probe_task(name: str, **fields: Any) -> dict[str, Any]:
    return {
        "Type": "Task",
        "Resource": "arn:aws:states:::lambda:invoke",
        "Parameters": {"FunctionName": name, "Payload": {"say": "hello"}},
        "Retry": RETRY_ALL,
        "Catch": CATCH_ALL,
        "End": True,
        **fields,
    }


def _scheduled(stack: LocalStack, described: dict[str, Any]) -> int:
    events = stack.client("stepfunctions").get_execution_history(executionArn=described["executionArn"])["events"]
    return sum(e["type"] == "TaskScheduled" for e in events)


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"ResultSelector": {"missing.$": "$.Payload.noSuchField"}}, id="ResultSelector"),
        pytest.param(
            {"Parameters": {"FunctionName": "set below", "Payload": {"x.$": "$.noSuchField"}}}, id="Parameters"
        ),
        pytest.param({"InputPath": "$.noSuchField"}, id="InputPath"),
        pytest.param({"OutputPath": "$.noSuchField"}, id="OutputPath"),
    ],
)
def test_a_path_that_does_not_resolve_fails_the_execution_past_retry_and_catch_on_states_all(
    stack: LocalStack, deploy: Deploy, fields: dict[str, Any]
) -> None:
    name = deploy()
    if "Parameters" in fields:
        fields["Parameters"]["FunctionName"] = name
    definition = {"StartAt": "Call", "States": {"Call": _probe_task(name, **fields), "Caught": CAUGHT}}
    described = run_state_machine(stack, definition, invoke_role(stack, name), execution_input={"here": 1})
    assert described["status"] == "FAILED", described
    assert described["error"] == "States.Runtime"
    assert "noSuchField" in described["cause"]
    # No retry either: the Retry on States.ALL (2 attempts) would have scheduled the task again.
    assert _scheduled(stack, described) <= 1


def test_an_explicit_states_runtime_catch_does_not_catch_it_either(stack: LocalStack, deploy: Deploy) -> None:
    name = deploy()
    task = _probe_task(
        name,
        ResultSelector={"missing.$": "$.Payload.noSuchField"},
        Retry=[{"ErrorEquals": ["States.Runtime"], "MaxAttempts": 2}],
        Catch=[{"ErrorEquals": ["States.Runtime"], "Next": "Caught"}],
    )
    described = run_state_machine(
        stack, {"StartAt": "Call", "States": {"Call": task, "Caught": CAUGHT}}, invoke_role(stack, name)
    )
    assert described["status"] == "FAILED" and described["error"] == "States.Runtime"
    assert _scheduled(stack, described) == 1


def test_the_same_task_with_a_field_that_resolves_succeeds(stack: LocalStack, deploy: Deploy) -> None:
    """The model is not over-strict: the probe's answer has ``invocations``."""
    name = deploy()
    task = _probe_task(name, ResultSelector={"n.$": "$.Payload.invocations"}, ResultPath="$.result")
    described = run_state_machine(
        stack, {"StartAt": "Call", "States": {"Call": task, "Caught": CAUGHT}}, invoke_role(stack, name)
    )
    assert described["status"] == "SUCCEEDED", described
    assert json.loads(described["output"])["result"]["n"] >= 1


def _choice(rule: dict[str, Any]) -> dict[str, Any]:
    return {
        "StartAt": "Which",
        "States": {
            "Which": {"Type": "Choice", "Choices": [{**rule, "Next": "Matched"}], "Default": "Otherwise"},
            "Matched": {"Type": "Pass", "Result": "matched", "ResultPath": "$.taken", "End": True},
            "Otherwise": {"Type": "Pass", "Result": "otherwise", "ResultPath": "$.taken", "End": True},
        },
    }


def test_a_choice_on_a_missing_variable_fails_the_execution(stack: LocalStack) -> None:
    definition = _choice({"Variable": "$.status", "StringEquals": "SUCCEEDED"})
    described = run_state_machine(
        stack, definition, stack.role_arn("TransferStateMachineRole"), execution_input={"other": 1}
    )
    assert described["status"] == "FAILED", described  # moto took Default
    assert described["error"] == "States.Runtime"
    assert "$.status" in described["cause"]


@pytest.mark.parametrize(
    ("rule", "execution_input", "taken"),
    [
        ({"Variable": "$.status", "IsPresent": True}, {"other": 1}, "otherwise"),
        ({"Variable": "$.status", "IsPresent": False}, {"other": 1}, "matched"),
        (
            {"And": [{"Variable": "$.status", "IsPresent": True}, {"Variable": "$.status", "StringEquals": "A"}]},
            {"other": 1},
            "otherwise",
        ),
        ({"Variable": "$.status", "StringEquals": "A"}, {"status": "A"}, "matched"),
    ],
)
def test_is_present_is_how_a_choice_asks_about_a_missing_variable(
    stack: LocalStack, rule: dict[str, Any], execution_input: dict[str, Any], taken: str
) -> None:
    described = run_state_machine(
        stack, _choice(rule), stack.role_arn("TransferStateMachineRole"), execution_input=execution_input
    )
    assert described["status"] == "SUCCEEDED", described
    assert json.loads(described["output"])["taken"] == taken


def test_a_state_output_over_256_kb_is_not_caught_by_states_all(stack: LocalStack) -> None:
    """A branch's Pass doubles a 150 KB input: 300 KB of output, over the 256 KB payload quota."""
    definition = {
        "StartAt": "Both",
        "States": {
            "Both": {
                "Type": "Parallel",
                "Branches": [
                    {
                        "StartAt": "Double",
                        "States": {
                            "Double": {"Type": "Pass", "Parameters": {"a.$": "$.blob", "b.$": "$.blob"}, "End": True}
                        },
                    }
                ],
                "Retry": RETRY_ALL,
                "Catch": CATCH_ALL,
                "End": True,
            },
            "Caught": CAUGHT,
        },
    }
    described = run_state_machine(
        stack, definition, stack.role_arn("TransferStateMachineRole"), execution_input={"blob": "x" * 150_000}
    )
    assert described["status"] == "FAILED", described
    assert described["error"] == "States.DataLimitExceeded"


def test_a_catch_all_still_catches_a_task_error(stack: LocalStack, deploy: Deploy) -> None:
    """The counterpart: an error of the task itself (the function raised) is caught by States.ALL."""
    name = deploy()
    task = _probe_task(name, Parameters={"FunctionName": name, "Payload": {"raise": "boom"}}, Retry=[])
    described = run_state_machine(
        stack, {"StartAt": "Call", "States": {"Call": task, "Caught": CAUGHT}}, invoke_role(stack, name)
    )
    assert described["status"] == "SUCCEEDED", described
    assert json.loads(described["output"])["failure"]["Error"] == "KeyError"
