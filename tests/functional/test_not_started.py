"""Not started means not started (issue 19, item 4): both starter attempts wrote the row and failed at
StartExecution. Status and the outcome waiter, once the row is past ``not_started_grace_seconds`` and still
at STARTED, start the execution themselves (same name and input as the starter's), or, if that fails too,
end the row FAILED (ExecutionNotStarted) so the caller does not hold to MaxHoldSeconds for nothing.

Before it, a poll is one GetItem and nothing else: no Step Functions call for a young row or a row past
STARTED (DescribeExecution's 15/s quota; StartExecution is only for rows that need it)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from holdline.config import get_settings
from holdline.dal import aws
from holdline.handlers import outcome_waiter, results, starter, status
from holdline.logic.starter import tracker_id_for
from holdline_local.stack import LocalStack
from tests.faults import DeadlineContext, FaultyClients, error
from tests.helpers import executions, tracker_row, wait_for_execution

GOOD = {"fromAccount": "CHK-00011111", "toAccount": "SAV-00022222", "amount": "7.25", "currency": "USD"}
START_REFUSED = error("StateMachineDoesNotExist")


def _both_starts_fail(stack: LocalStack, connect_event: Any, call: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """The flow's two "Start transfer" visits: each writes (or finds) the row, each fails at StartExecution."""
    event = connect_event(GOOD)
    faults = FaultyClients(aws.client).always_on("stepfunctions", "start_execution", START_REFUSED)
    monkeypatch.setattr(aws, "client", faults)
    for _ in range(2):
        assert call(starter.handler, event)["status"] == "ERROR"
    monkeypatch.setattr(aws, "client", aws.clients)
    contact = event["Details"]["ContactData"]["ContactId"]
    tracker_id = tracker_id_for("transfer", contact, contact)
    row = tracker_row(stack, tracker_id)
    assert row is not None and row["step"]["S"] == "STARTED"
    assert executions(stack, tracker_id) == []
    return tracker_id


def _age(stack: LocalStack, tracker_id: str, seconds: int) -> None:
    """The row as the starter wrote it ``seconds`` ago (createdAt is what the grace is measured from)."""
    stack.client("dynamodb").update_item(
        TableName="TrackerTable",
        Key={"trackerId": {"S": tracker_id}},
        UpdateExpression="SET createdAt = :t",
        ExpressionAttributeValues={":t": {"N": str(int(time.time()) - seconds)}},
    )


def _past_grace() -> int:
    return get_settings().not_started_grace_seconds + 1


def test_a_young_row_at_started_costs_no_step_functions_call(
    stack: LocalStack, connect_event: Any, call: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    tracker_id = _both_starts_fail(stack, connect_event, call, monkeypatch)
    faults = FaultyClients(aws.client)
    monkeypatch.setattr(aws, "client", faults)
    poll = call(status.handler, connect_event({"trackerId": tracker_id}))
    assert (poll["status"], poll["keepWaiting"], poll["step"]) == ("RUNNING", "true", "STARTED")
    assert faults.calls == ["dynamodb.get_item"]


def test_status_starts_a_row_left_at_started_and_the_transfer_completes(
    stack: LocalStack, connect_event: Any, call: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    tracker_id = _both_starts_fail(stack, connect_event, call, monkeypatch)
    _age(stack, tracker_id, _past_grace())
    poll = call(status.handler, connect_event({"trackerId": tracker_id}))
    assert poll["status"] == "RUNNING" and poll["keepWaiting"] == "true"
    assert [e["name"] for e in executions(stack, tracker_id)] == [tracker_id]
    assert wait_for_execution(stack, tracker_id)["status"] == "SUCCEEDED"
    assert stack.bank is not None and stack.bank.count(tracker_id, "debit") == 1
    # The same start again (a later poll of a row that has moved on, or a racing one) changes nothing.
    _age(stack, tracker_id, _past_grace())
    again = call(status.handler, connect_event({"trackerId": tracker_id}))
    assert again["status"] == "SUCCEEDED" and len(executions(stack, tracker_id)) == 1


def test_status_ends_a_row_that_cannot_be_started_so_the_caller_stops_holding(
    stack: LocalStack, connect_event: Any, call: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    tracker_id = _both_starts_fail(stack, connect_event, call, monkeypatch)
    _age(stack, tracker_id, _past_grace())
    faults = FaultyClients(aws.client).always_on("stepfunctions", "start_execution", START_REFUSED)
    monkeypatch.setattr(aws, "client", faults)
    poll = call(status.handler, connect_event({"trackerId": tracker_id}))
    assert (poll["status"], poll["keepWaiting"]) == ("FAILED", "false")
    assert "holdExceeded" not in poll
    monkeypatch.setattr(aws, "client", aws.clients)
    answer = call(results.handler, connect_event({"trackerId": tracker_id}))
    assert (answer["status"], answer["errorCode"], answer["refunded"]) == ("FAILED", "EXECUTION_NOT_STARTED", "false")
    row = tracker_row(stack, tracker_id)
    assert row is not None and row["failureSource"]["S"] == "STATUS" and row["step"]["S"] == "DONE"
    assert stack.bank is not None and stack.bank.count(tracker_id, "debit") == 0


def test_the_waiter_starts_a_row_left_at_started_and_hears_the_outcome(
    stack: LocalStack, connect_event: Any, call: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    tracker_id = _both_starts_fail(stack, connect_event, call, monkeypatch)
    _age(stack, tracker_id, _past_grace())
    started = time.monotonic()
    answer = call(outcome_waiter.handler, connect_event({"trackerId": tracker_id}), DeadlineContext(60_000))
    assert (answer["status"], answer["keepWaiting"]) == ("SUCCEEDED", "false")
    assert time.monotonic() - started < 30
    assert len(executions(stack, tracker_id)) == 1


def test_the_waiter_ends_a_row_that_cannot_be_started_at_once(
    stack: LocalStack, connect_event: Any, call: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    tracker_id = _both_starts_fail(stack, connect_event, call, monkeypatch)
    _age(stack, tracker_id, _past_grace())
    faults = FaultyClients(aws.client).always_on("stepfunctions", "start_execution", START_REFUSED)
    monkeypatch.setattr(aws, "client", faults)
    started = time.monotonic()
    answer = call(outcome_waiter.handler, connect_event({"trackerId": tracker_id}), DeadlineContext(60_000))
    assert (answer["status"], answer["keepWaiting"]) == ("FAILED", "false")
    assert time.monotonic() - started < 5
    assert faults.count("stepfunctions", "start_execution") == 1
    row = tracker_row(stack, tracker_id)
    assert row is not None and row["failureError"]["S"] == "ExecutionNotStarted"
