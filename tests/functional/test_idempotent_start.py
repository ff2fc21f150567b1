"""Idempotent start under Connect's retries: one (contact, requestId) is one row, one execution, one debit,
however often, however concurrently, and whatever crashed in between.

The starter writes the tracker row first, then starts the execution named after it. Crashes are injected
around the real calls (tests/faults.py): the call before the crash really lands on the local stack.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from holdline.dal import aws
from holdline.handlers import starter, status
from holdline.logic.starter import tracker_id_for
from holdline_local.stack import LocalStack
from tests.faults import Crash, FaultyClients, crash_after, crash_before, lost_answer
from tests.helpers import executions, tracker_row, wait_for_execution

GOOD = {"fromAccount": "CHK-00011111", "toAccount": "SAV-00022222", "amount": "12.50", "currency": "USD"}


def _row_count(stack: LocalStack, tracker_id: str) -> int:
    scanned = stack.client("dynamodb").scan(
        TableName="TrackerTable",
        FilterExpression="trackerId = :id",
        ExpressionAttributeValues={":id": {"S": tracker_id}},
    )
    return int(scanned["Count"])


def _assert_one_transfer(stack: LocalStack, tracker_id: str) -> None:
    """Exactly one row, one execution of that name, which moved the money once."""
    assert _row_count(stack, tracker_id) == 1
    assert [e["name"] for e in executions(stack, tracker_id)] == [tracker_id]
    assert wait_for_execution(stack, tracker_id)["status"] == "SUCCEEDED"
    row = tracker_row(stack, tracker_id)
    assert row is not None and row["status"]["S"] == "SUCCEEDED"
    assert stack.bank is not None and stack.bank.count(tracker_id, "debit") == 1
    assert stack.bank.count(tracker_id, "credit") == 1


def _concurrently(count: int, call: Any) -> list[Any]:
    barrier = threading.Barrier(count)

    def run(index: int) -> Any:
        barrier.wait()
        return call(index)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(run, range(count)))


def test_fifty_concurrent_retries_are_one_transfer(stack: LocalStack, connect_event: Any) -> None:
    """Through the Lambda API: concurrent invocations land in several execution environments, as Connect's
    retries of one block do."""
    event = connect_event({**GOOD, "requestId": "transfer-1"})
    answers = _concurrently(50, lambda _: stack.invoke("StarterFunction", event))
    tracker_id = answers[0]["trackerId"]
    assert all(answer == answers[0] for answer in answers), {str(a) for a in answers}
    assert answers[0]["status"] == "STARTED"
    assert tracker_id == tracker_id_for("transfer", event["Details"]["ContactData"]["ContactId"], "transfer-1")
    _assert_one_transfer(stack, tracker_id)


def test_concurrent_conflicting_payloads_one_wins_the_rest_conflict(stack: LocalStack, connect_event: Any) -> None:
    contact = connect_event(GOOD)["Details"]["ContactData"]["ContactId"]
    events = [connect_event({**GOOD, "amount": amount}, contact_id=contact) for amount in ("10.00", "20.00")]
    answers = _concurrently(30, lambda i: (i % 2, stack.invoke("StarterFunction", events[i % 2])))
    started = {kind for kind, answer in answers if answer["status"] == "STARTED"}
    assert len(started) == 1, answers  # one payload won the row; every answer for it is STARTED
    winner = started.pop()
    for kind, answer in answers:
        if kind == winner:
            assert answer["status"] == "STARTED"
        else:
            assert answer == {
                "status": "REJECTED",
                "errorCode": "IDEMPOTENCY_CONFLICT",
                "errorMessage": "That request was already made with other details.",
                "retryable": "false",
            }
    tracker_id = next(answer["trackerId"] for kind, answer in answers if kind == winner)
    row = tracker_row(stack, tracker_id)
    assert row is not None and row["request"]["M"]["amount"]["S"] == ("10.00", "20.00")[winner]
    _assert_one_transfer(stack, tracker_id)


@pytest.mark.parametrize("change", [{"amount": "12.51"}, {"toAccount": "SAV-00033333"}, {"fromAccount": "CHK-9999"}])
def test_same_key_other_payload_is_refused_and_changes_nothing(
    stack: LocalStack, connect_event: Any, call: Any, change: dict[str, str]
) -> None:
    first = connect_event({**GOOD, "requestId": "r-1"})
    contact = first["Details"]["ContactData"]["ContactId"]
    started = call(starter.handler, first)
    tracker_id = started["trackerId"]
    before = tracker_row(stack, tracker_id)
    spy = FaultyClients(aws.client)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(aws, "client", spy)
        again = call(starter.handler, connect_event({**GOOD, "requestId": "r-1", **change}, contact_id=contact))
    assert again["status"] == "REJECTED" and again["errorCode"] == "IDEMPOTENCY_CONFLICT"
    assert "trackerId" not in again  # nothing replayed: the flow learns nothing about the first request
    assert spy.calls == ["dynamodb.put_item"]  # refused on the conditional write's answer: no start
    after = tracker_row(stack, tracker_id)
    assert after is not None and before is not None and after["request"] == before["request"]
    # The original request is untouched and still completes once.
    assert call(starter.handler, first) == started
    _assert_one_transfer(stack, tracker_id)


def test_equivalent_payloads_are_the_same_request(stack: LocalStack, connect_event: Any, call: Any) -> None:
    """ "12.5" and "12.50", an explicit default currency: the same money, so a retry, not a conflict."""
    first = connect_event({**GOOD, "currency": ""})
    contact = first["Details"]["ContactData"]["ContactId"]
    answer = call(starter.handler, first)
    again = call(starter.handler, connect_event({**GOOD, "amount": "12.5"}, contact_id=contact))
    assert again == answer and answer["status"] == "STARTED"
    _assert_one_transfer(stack, answer["trackerId"])


def test_crash_after_row_before_start_converges_on_retry(
    stack: LocalStack, connect_event: Any, call: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    event = connect_event(GOOD)
    faults = FaultyClients(aws.client).on("stepfunctions", "start_execution", crash_before)
    monkeypatch.setattr(aws, "client", faults)
    with pytest.raises(Crash):
        call(starter.handler, event)
    tracker_id = tracker_id_for(
        "transfer", event["Details"]["ContactData"]["ContactId"], event["Details"]["ContactData"]["ContactId"]
    )
    row = tracker_row(stack, tracker_id)
    assert row is not None and row["step"]["S"] == "STARTED"  # the gap: a row, no execution
    assert executions(stack, tracker_id) == []
    # While the gap is open the flow, if it polls, hears "still starting", never NOT_FOUND or a failure.
    poll = call(status.handler, connect_event({"trackerId": tracker_id}))
    assert poll["status"] == "RUNNING" and poll["keepWaiting"] == "true" and poll["step"] == "STARTED"

    answer = call(starter.handler, event)  # Connect's retry
    assert answer["status"] == "STARTED" and answer["trackerId"] == tracker_id
    assert faults.count("stepfunctions", "start_execution") == 2
    _assert_one_transfer(stack, tracker_id)


def test_crash_after_start_before_answer_converges_on_retry(
    stack: LocalStack, connect_event: Any, call: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """StartExecution landed, the answer was lost. The retry's start is a no-op (same name, same input)."""
    event = connect_event(GOOD)
    monkeypatch.setattr(aws, "client", FaultyClients(aws.client).on("stepfunctions", "start_execution", crash_after))
    with pytest.raises(Crash):
        call(starter.handler, event)
    answer = call(starter.handler, event)
    assert answer["status"] == "STARTED"
    _assert_one_transfer(stack, answer["trackerId"])


def test_retry_after_the_execution_closed_replays_without_paying_twice(
    stack: LocalStack, connect_event: Any, call: Any
) -> None:
    """Connect's last retry can arrive after the transfer finished (ExecutionAlreadyExists): same answer."""
    event = connect_event(GOOD)
    first = call(starter.handler, event)
    wait_for_execution(stack, first["trackerId"])
    assert call(starter.handler, event) == first
    _assert_one_transfer(stack, first["trackerId"])


def test_crash_after_row_write_before_its_answer_converges_on_retry(
    stack: LocalStack, connect_event: Any, call: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    event = connect_event(GOOD)
    monkeypatch.setattr(aws, "client", FaultyClients(aws.client).on("dynamodb", "put_item", crash_after))
    with pytest.raises(Crash):
        call(starter.handler, event)
    answer = call(starter.handler, event)
    assert answer["status"] == "STARTED"
    _assert_one_transfer(stack, answer["trackerId"])


def test_lost_answers_are_retried_within_one_invocation(
    stack: LocalStack, connect_event: Any, call: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both calls land but their answers time out: the in-budget retry meets its own row (the failed
    condition hands it back) and its own execution, and the caller hears STARTED the first time."""
    faults = (
        FaultyClients(aws.client)
        .on("dynamodb", "put_item", lost_answer)
        .on("stepfunctions", "start_execution", lost_answer)
    )
    monkeypatch.setattr(aws, "client", faults)
    answer = call(starter.handler, connect_event(GOOD))
    assert answer["status"] == "STARTED"
    assert faults.count("dynamodb", "put_item") == 2 and faults.count("stepfunctions", "start_execution") == 2
    assert faults.count("dynamodb", "get_item") == 0  # the conditional write's failure carried the row
    _assert_one_transfer(stack, answer["trackerId"])


def test_an_execution_without_its_row_moves_no_money(stack: LocalStack) -> None:
    """Why the row comes first: an execution started before its row (the other order, crashed) fails at its
    first step and touches no account. The starter never creates one."""
    tracker_id = tracker_id_for("transfer", "orphan-contact", "orphan-contact")
    stack.client("stepfunctions").start_execution(
        stateMachineArn=stack.arn("TransferStateMachine"),
        name=tracker_id,
        input=f'{{"operation":"transfer","trackerId":"{tracker_id}"}}',
    )
    assert wait_for_execution(stack, tracker_id)["status"] == "FAILED"
    assert stack.bank is not None and stack.bank.count(tracker_id) == 0
    assert tracker_row(stack, tracker_id) is None
