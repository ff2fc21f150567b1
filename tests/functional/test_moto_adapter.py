"""The moto adapter against the pinned moto: functions run in the local runtime, errors carry their class
name, time is scaled, moto's known faults are corrected, and a moto upgrade that moves these hooks fails here
first."""

from __future__ import annotations

import json
import time
import tomllib
from pathlib import Path
from typing import Any

import moto
import pytest

from holdline_local import moto_adapter
from holdline_local.stack import LocalStack
from tests.probes import Deploy, invoke_role, one_task, run_state_machine

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


def _debit_task(stack: LocalStack, **extra: Any) -> dict[str, Any]:
    return {
        "Type": "Task",
        "Resource": "arn:aws:states:::lambda:invoke",
        "Parameters": {"FunctionName": stack.arn("DebitFunction"), "Payload": {"trackerId": "transfer-none"}},
        **extra,
    }


def test_wait_state_and_retry_intervals_are_scaled(stack: LocalStack) -> None:
    """A 30 s Wait and a retry with 20 s intervals finish in well under a second at time scale 0.01."""
    definition = {
        "StartAt": "Wait",
        "States": {
            "Wait": {"Type": "Wait", "Seconds": 30, "Next": "Fail"},
            "Fail": _debit_task(
                stack, Retry=[{"ErrorEquals": ["TrackerNotFound"], "IntervalSeconds": 20, "MaxAttempts": 2}], End=True
            ),
        },
    }
    before = stack.invocations().get("DebitFunction", 0)
    started = time.monotonic()
    described = run_state_machine(stack, definition, stack.role_arn("TransferStateMachineRole"), timeout=20)
    assert described["status"] == "FAILED" and described["error"] == "TrackerNotFound"
    events = stack.client("stepfunctions").get_execution_history(executionArn=described["executionArn"])["events"]
    assert sum(e["type"] == "TaskScheduled" for e in events) == 3  # first try + 2 retries
    assert stack.invocations()["DebitFunction"] - before >= 3
    assert time.monotonic() - started < 20


def test_task_timeouts_scale_with_function_timeouts_and_the_function_keeps_running(
    stack: LocalStack, deploy: Deploy
) -> None:
    """TimeoutSeconds 4 under a function Timeout of 10, at timeout scale 0.25: the task gives up after ~1 s
    with States.Timeout; the function it called goes on (a task timeout does not stop the Lambda) and ends
    normally, within its own (scaled) 2.5 s."""
    name = deploy(timeout=10)
    definition = one_task(name, {"sleep": 1.8}, TimeoutSeconds=4)
    previous = moto_adapter.set_timeout_scale(0.25)
    try:
        started = time.monotonic()
        described = run_state_machine(stack, definition, invoke_role(stack, name))
        elapsed = time.monotonic() - started
    finally:
        moto_adapter.set_timeout_scale(previous)
    assert described["status"] == "FAILED" and described["error"] == "States.Timeout"
    assert 0.9 < elapsed < 1.8, elapsed
    assert stack.runtime is not None
    deadline = time.monotonic() + 5
    while stack.runtime.stats[name].invocations < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    report = [line.text for line in stack.runtime.logs(name) if line.text.startswith("REPORT")]
    assert report and "Status" not in report[-1]  # the function finished on its own
    assert moto_adapter.timeout_scale() == previous


def test_a_parallel_branch_failing_with_a_states_error_is_caught_by_the_parallel(
    stack: LocalStack, deploy: Deploy
) -> None:
    """moto rebuilds a branch's error as a custom error name, which refuses ``States.*``: without the adapter's
    fix a task timeout inside a Parallel kills the execution instead of reaching the Parallel's Catch."""
    name = deploy(timeout=10)
    definition = {
        "StartAt": "Both",
        "States": {
            "Both": {
                "Type": "Parallel",
                "Branches": [
                    {
                        "StartAt": "Slow",
                        "States": {
                            "Slow": {
                                "Type": "Task",
                                "Resource": "arn:aws:states:::lambda:invoke",
                                "Parameters": {"FunctionName": name, "Payload": {"sleep": 3}},
                                "TimeoutSeconds": 1,
                                "End": True,
                            }
                        },
                    }
                ],
                "Catch": [{"ErrorEquals": ["States.Timeout"], "ResultPath": "$.failure", "Next": "Caught"}],
                "End": True,
            },
            "Caught": {"Type": "Pass", "End": True},
        },
    }
    described = run_state_machine(stack, definition, invoke_role(stack, name))
    assert described["status"] == "SUCCEEDED", described
    assert json.loads(described["output"])["failure"]["Error"] == "States.Timeout"


def test_a_definition_is_parsed_once_and_clients_are_reused(stack: LocalStack) -> None:
    definition = {"StartAt": "Fail", "States": {"Fail": _debit_task(stack, End=True)}}
    role = stack.role_arn("TransferStateMachineRole")
    run_state_machine(stack, definition, role)
    parsed_before = moto_adapter._parsed.cache_info()
    clients_before = len(moto_adapter._installed["boto_client_factory"]._clients)
    for _ in range(3):
        run_state_machine(stack, definition, role)
    parsed_after = moto_adapter._parsed.cache_info()
    assert parsed_after.hits - parsed_before.hits == 3 and parsed_after.misses == parsed_before.misses
    assert len(moto_adapter._installed["boto_client_factory"]._clients) == clients_before


def test_names_follow_logical_ids(stack: LocalStack) -> None:
    assert stack.arn("TransferStateMachine").endswith(":stateMachine:TransferStateMachine")
    assert stack.client("dynamodb").describe_table(TableName="TrackerTable")["Table"]["TableName"] == "TrackerTable"
    ttl = stack.client("dynamodb").describe_time_to_live(TableName="TrackerTable")["TimeToLiveDescription"]
    assert ttl["AttributeName"] == "expiresAt"


@pytest.mark.parametrize(
    "attribute",
    [{"DataType": "String", "StringValue": ""}, {"DataType": "Number", "StringValue": ""}],
)
def test_sqs_refuses_an_empty_message_attribute_value(stack: LocalStack, attribute: dict[str, str]) -> None:
    """SQS API reference, MessageAttributeValue: "Name, type, value and the message body must not be empty or
    null" (InvalidParameterValue); moto refused only a null value."""
    sqs = stack.client("sqs")
    url = sqs.create_queue(QueueName=f"Probe{time.monotonic_ns()}")["QueueUrl"]
    with pytest.raises(sqs.exceptions.ClientError) as refused:
        sqs.send_message(QueueUrl=url, MessageBody="x", MessageAttributes={"ERROR_MESSAGE": attribute})
    assert refused.value.response["Error"]["Code"] in {"InvalidParameterValue", "InvalidParameterValueException"}
    with pytest.raises(sqs.exceptions.ClientError):
        sqs.send_message_batch(
            QueueUrl=url, Entries=[{"Id": "1", "MessageBody": "x", "MessageAttributes": {"A": attribute}}]
        )
    sqs.send_message(QueueUrl=url, MessageBody="x", MessageAttributes={"A": {**attribute, "StringValue": "1"}})
    assert sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"][0]["Body"] == "x"
    sqs.delete_queue(QueueUrl=url)
