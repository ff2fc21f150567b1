"""The Connect-facing handlers against the local stack's DynamoDB and Step Functions."""

from __future__ import annotations

import time
from typing import Any

import pytest

from holdline.handlers import results, starter, status
from holdline_local.stack import LocalStack
from tests.helpers import executions, tracker_row, wait_for_execution

GOOD = {"fromAccount": "CHK-00011111", "toAccount": "SAV-00022222", "amount": "12.50", "currency": "USD"}


def test_starter_writes_tracker_and_starts_named_execution(
    stack: LocalStack, connect_event: Any, lambda_context: Any
) -> None:
    answer = starter.handler(connect_event(GOOD), lambda_context)
    assert answer["status"] == "STARTED"
    assert answer["nextPollSeconds"].isdigit()
    tracker_id = answer["trackerId"]
    row = tracker_row(stack, tracker_id)
    assert row is not None
    assert row["status"]["S"] in {"RUNNING", "SUCCEEDED"}
    assert row["request"]["M"]["amount"] == {"S": "12.50"}  # money as a string, never a float
    assert int(row["expiresAt"]["N"]) > time.time() + 86400
    assert [e["name"] for e in executions(stack, tracker_id)] == [tracker_id]
    assert wait_for_execution(stack, tracker_id)["status"] == "SUCCEEDED"


def test_same_contact_twice_is_one_transfer(stack: LocalStack, connect_event: Any, lambda_context: Any) -> None:
    event = connect_event(GOOD)
    first = starter.handler(event, lambda_context)
    second = starter.handler(event, lambda_context)
    assert first == second
    assert len(executions(stack, first["trackerId"])) == 1
    wait_for_execution(stack, first["trackerId"])
    assert stack.bank is not None and stack.bank.count(first["trackerId"], "debit") == 1


def test_same_key_other_amount_is_a_conflict(stack: LocalStack, connect_event: Any, lambda_context: Any) -> None:
    first = starter.handler(connect_event(GOOD, contact_id="conflict-contact"), lambda_context)
    other = starter.handler(connect_event({**GOOD, "amount": "99.00"}, contact_id="conflict-contact"), lambda_context)
    assert other["status"] == "REJECTED" and other["errorCode"] == "IDEMPOTENCY_CONFLICT"
    assert len(executions(stack, first["trackerId"])) == 1


@pytest.mark.parametrize(
    ("parameters", "code"),
    [
        ({**GOOD, "amount": "-1"}, "INVALID_AMOUNT"),
        ({**GOOD, "amount": "100000"}, "LIMIT_EXCEEDED"),
        ({**GOOD, "currency": "XYZ"}, "UNSUPPORTED_CURRENCY"),
        ({**GOOD, "toAccount": GOOD["fromAccount"]}, "SAME_ACCOUNT"),
        ({k: v for k, v in GOOD.items() if k != "toAccount"}, "MISSING_PARAMETER"),
        ({**GOOD, "operation": "launch-rockets"}, "UNKNOWN_OPERATION"),
    ],
)
def test_rejected_requests_write_and_start_nothing(
    stack: LocalStack, connect_event: Any, lambda_context: Any, parameters: dict[str, str], code: str
) -> None:
    before = len(executions(stack))
    rows_before = stack.client("dynamodb").scan(TableName="TrackerTable", Select="COUNT")["Count"]
    answer = starter.handler(connect_event(parameters), lambda_context)
    assert answer["status"] == "REJECTED" and answer["errorCode"] == code and answer["retryable"] == "false"
    assert "11111" not in answer["errorMessage"] and "22222" not in answer["errorMessage"]
    assert len(executions(stack)) == before
    assert stack.client("dynamodb").scan(TableName="TrackerTable", Select="COUNT")["Count"] == rows_before


def test_status_and_results_follow_the_tracker(stack: LocalStack, connect_event: Any, lambda_context: Any) -> None:
    started = starter.handler(connect_event(GOOD), lambda_context)
    poll = connect_event({}, attributes={"trackerId": started["trackerId"]})
    first = status.handler(poll, lambda_context)
    assert first["status"] in {"RUNNING", "SUCCEEDED"} and first["stepsTotal"] == "3"
    wait_for_execution(stack, started["trackerId"])
    final = status.handler(poll, lambda_context)
    assert final == {**final, "status": "SUCCEEDED", "keepWaiting": "false", "stepsDone": "3", "step": "DONE"}
    assert set(final) >= {"nextPollSeconds", "elapsedSeconds"}
    answer = results.handler(poll, lambda_context)
    assert answer["status"] == "SUCCEEDED" and answer["amount"] == "12.50" and answer["currency"] == "USD"
    assert answer["confirmationNumber"].startswith("HL")


def test_status_and_results_for_unknown_tracker(stack: LocalStack, connect_event: Any, lambda_context: Any) -> None:
    for handler in (status.handler, results.handler):
        answer = handler(connect_event({"trackerId": "transfer-doesnotexist"}), lambda_context)
        assert answer["status"] == "NOT_FOUND" and answer["keepWaiting"] == "false"
        assert handler(connect_event({}), lambda_context)["status"] == "NOT_FOUND"


def test_status_reads_only_the_tracker(
    stack: LocalStack, connect_event: Any, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One GetItem, never DescribeExecution (15/s quota): any other AWS call fails this test."""
    from holdline.dal import aws

    started = starter.handler(connect_event(GOOD), lambda_context)
    calls: list[str] = []
    real = aws.client

    class Spy:
        def __init__(self, service: str) -> None:
            self._client = real(service)
            self._service = service

        def __getattr__(self, name: str) -> Any:
            calls.append(f"{self._service}.{name}")
            return getattr(self._client, name)

    monkeypatch.setattr(aws, "client", Spy)
    status.handler(connect_event({"trackerId": started["trackerId"]}), lambda_context)
    assert calls == ["dynamodb.get_item"]
