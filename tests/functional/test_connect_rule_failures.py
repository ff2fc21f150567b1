"""Connect's own rule-action failures: recorded, counted, re-attempted when retryable, else dead-lettered."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from holdline.handlers import follow_up
from holdline_local.connect_standin import ConnectStandIn
from holdline_local.stack import LocalStack
from tests.conftest import load_event
from tests.helpers import wait_for_execution
from tests.workflow.test_follow_up_workflow import MACHINE, dead_letters


@pytest.fixture
def connect(stack: LocalStack) -> Iterator[ConnectStandIn]:
    assert stack.connect is not None
    stack.connect.clear_faults()
    dead_letters(stack)
    yield stack.connect


@pytest.fixture
def metric_names(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    names: list[str] = []
    real = follow_up.metrics.add_metric

    def spy(name: str, unit: Any, value: float, **kwargs: Any) -> None:
        names.append(name)
        real(name=name, unit=unit, value=value, **kwargs)

    monkeypatch.setattr(follow_up.metrics, "add_metric", spy)
    return names


def fresh(name: str, **detail: Any) -> dict[str, Any]:
    """A sample event with a new event id and rule id (each test is a new failure)."""
    event = copy.deepcopy(load_event(name))
    event["id"] = str(uuid.uuid4())
    event["detail"].update({"ruleId": str(uuid.uuid4()), **detail})
    return event


def recorded(stack: LocalStack, event_id: str) -> list[dict[str, Any]]:
    items = stack.client("dynamodb").scan(
        TableName="TrackerTable",
        FilterExpression="eventId = :id",
        ExpressionAttributeValues={":id": {"S": event_id}},
    )["Items"]
    return list(items)


def test_retryable_create_task_is_re_attempted_after_its_delay(
    stack: LocalStack, connect: ConnectStandIn, call: Any, metric_names: list[str]
) -> None:
    event = fresh("connect-rule-create-task-quota.json")
    outcome = call(follow_up.rule_failure, event)
    assert outcome["outcome"] == "RETRY_SCHEDULED"
    assert "ConnectRuleActionFailed" in metric_names
    (row,) = recorded(stack, event["id"])
    assert row["reasonCode"]["S"] == "ServiceQuotaExceededException" and row["status"]["S"] == "HANDLED"
    follow_up_id = outcome["followUpTrackerId"]
    wait_for_execution(stack, follow_up_id, machine=MACHINE)
    waits = [
        e
        for e in stack.client("stepfunctions").get_execution_history(
            executionArn=stack.arn(MACHINE).replace(":stateMachine:", ":execution:") + ":" + follow_up_id
        )["events"]
        if e["type"] == "WaitStateEntered"
    ]
    assert json.loads(waits[0]["stateEnteredEventDetails"]["input"])["request"] == {"delaySeconds": 30}
    (task,) = [t for t in connect.tasks if t.client_token == follow_up_id]
    assert event["detail"]["ruleId"] in task.request["Description"]
    assert "PreviousContactId" not in task.request  # no call to link: a rule, not a contact


def test_repeat_delivery_is_handled_once(stack: LocalStack, connect: ConnectStandIn, call: Any) -> None:
    event = fresh("connect-rule-create-task-throttled.json")
    first = call(follow_up.rule_failure, event)
    assert call(follow_up.rule_failure, event) == {"outcome": "DUPLICATE"}
    wait_for_execution(stack, first["followUpTrackerId"], machine=MACHINE)
    assert connect.count(first["followUpTrackerId"]) == 1
    assert len(recorded(stack, event["id"])) == 1


def test_retries_per_rule_are_bounded(stack: LocalStack, connect: ConnectStandIn, call: Any) -> None:
    rule_id = str(uuid.uuid4())
    outcomes = [
        call(follow_up.rule_failure, fresh("connect-rule-create-task-throttled.json", ruleId=rule_id))["outcome"]
        for _ in range(7)
    ]
    assert outcomes == ["RETRY_SCHEDULED"] * 5 + ["DEAD_LETTERED"] * 2
    letters = dead_letters(stack)
    assert len(letters) == 2
    assert {m["MessageAttributes"]["EXHAUSTED_RETRY_CONDITION"]["StringValue"] for m in letters} == {
        "MaximumRetryAttempts"
    }


@pytest.mark.parametrize(
    ("name", "condition", "code"),
    [
        ("connect-rule-action-failed.json", "NotRetryable", "ResourceNotFoundException"),
        ("connect-rule-send-notification.json", "NotRetryable", "AccessDeniedException"),
        ("connect-rule-eventbridge-event.json", "UnsupportedAction", "InternalServiceException"),
    ],
)
def test_what_cannot_be_re_attempted_lands_in_the_dead_letter_queue(
    stack: LocalStack,
    connect: ConnectStandIn,
    call: Any,
    metric_names: list[str],
    name: str,
    condition: str,
    code: str,
) -> None:
    event = fresh(name)
    before = len(connect.tasks)
    assert call(follow_up.rule_failure, event) == {"outcome": "DEAD_LETTERED", "condition": condition}
    assert metric_names.count("ConnectRuleActionFailed") == 1
    assert len(connect.tasks) == before
    (message,) = dead_letters(stack)
    attributes = {k: v["StringValue"] for k, v in message["MessageAttributes"].items()}
    assert attributes["ERROR_CODE"] == code
    assert attributes["EXHAUSTED_RETRY_CONDITION"] == condition
    assert attributes["ERROR_MESSAGE"] == event["detail"]["error"]
    assert event["detail"]["ruleId"] in attributes["RULE_ARN"]
    assert len(recorded(stack, event["id"])) == 1


def test_the_cli_shows_what_needs_a_person_and_refuses_to_replay_it(
    stack: LocalStack, connect: ConnectStandIn, call: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from holdline_local.cli import main

    event = fresh("connect-rule-send-notification.json")
    call(follow_up.rule_failure, event)
    capsys.readouterr()
    assert main(["dlq", "--endpoint", stack.endpoint, "show", "FollowUpDeadLetterQueue"]) == 0
    shown = json.loads(capsys.readouterr().out)
    (message,) = [m for m in shown if event["id"] in json.dumps(m)]
    assert message["attributes"]["ERROR_CODE"] == "AccessDeniedException"
    assert message["attributes"]["EXHAUSTED_RETRY_CONDITION"] == "NotRetryable"
    assert main(["dlq", "--endpoint", stack.endpoint, "redrive", "FollowUpDeadLetterQueue"]) == 2
    assert "nothing to replay" in capsys.readouterr().err
    assert len(dead_letters(stack)) == 1  # still there for a person
