"""The Connect-facing handlers against the local stack's DynamoDB and Step Functions."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from boto3.dynamodb.types import TypeSerializer

from holdline.handlers import results, starter, status
from holdline_local.stack import LocalStack
from tests.helpers import executions, tracker_row, wait_for_execution

GOOD = {"fromAccount": "CHK-00011111", "toAccount": "SAV-00022222", "amount": "12.50", "currency": "USD"}


def test_starter_writes_tracker_and_starts_named_execution(stack: LocalStack, connect_event: Any, call: Any) -> None:
    answer = call(starter.handler, connect_event(GOOD))
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


def test_same_contact_twice_is_one_transfer(stack: LocalStack, connect_event: Any, call: Any) -> None:
    event = connect_event(GOOD)
    first = call(starter.handler, event)
    second = call(starter.handler, event)
    assert first == second
    assert len(executions(stack, first["trackerId"])) == 1
    wait_for_execution(stack, first["trackerId"])
    assert stack.bank is not None and stack.bank.count(first["trackerId"], "debit") == 1


def test_same_key_other_amount_is_a_conflict(stack: LocalStack, connect_event: Any, call: Any) -> None:
    first = call(starter.handler, connect_event(GOOD, contact_id="conflict-contact"))
    other = call(starter.handler, connect_event({**GOOD, "amount": "99.00"}, contact_id="conflict-contact"))
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
    stack: LocalStack, connect_event: Any, call: Any, parameters: dict[str, str], code: str
) -> None:
    before = len(executions(stack))
    rows_before = stack.client("dynamodb").scan(TableName="TrackerTable", Select="COUNT")["Count"]
    answer = call(starter.handler, connect_event(parameters))
    assert answer["status"] == "REJECTED" and answer["errorCode"] == code and answer["retryable"] == "false"
    assert "11111" not in answer["errorMessage"] and "22222" not in answer["errorMessage"]
    assert len(executions(stack)) == before
    assert stack.client("dynamodb").scan(TableName="TrackerTable", Select="COUNT")["Count"] == rows_before


def test_status_and_results_follow_the_tracker(stack: LocalStack, connect_event: Any, call: Any) -> None:
    started = call(starter.handler, connect_event(GOOD))
    poll = connect_event({}, attributes={"trackerId": started["trackerId"]})
    first = call(status.handler, poll)
    assert first["status"] in {"RUNNING", "SUCCEEDED"} and first["stepsTotal"] == "3"
    wait_for_execution(stack, started["trackerId"])
    final = call(status.handler, poll)
    assert final == {**final, "status": "SUCCEEDED", "keepWaiting": "false", "stepsDone": "3", "step": "DONE"}
    assert set(final) >= {"nextPollSeconds", "elapsedSeconds"}
    answer = call(results.handler, poll)
    assert answer["status"] == "SUCCEEDED" and answer["amount"] == "12.50" and answer["currency"] == "USD"
    assert answer["confirmationNumber"].startswith("HL")


def test_status_and_results_for_unknown_tracker(stack: LocalStack, connect_event: Any, lambda_context: Any) -> None:
    for handler in (status.handler, results.handler):
        answer = handler(connect_event({"trackerId": "transfer-doesnotexist"}), lambda_context)
        assert answer["status"] == "NOT_FOUND" and answer["keepWaiting"] == "false"
        assert handler(connect_event({}), lambda_context)["status"] == "NOT_FOUND"


def test_status_finds_the_transfer_of_this_contact_and_request_without_a_tracker_id(
    stack: LocalStack, connect_event: Any, call: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The flow's lookup after a starter that erred or timed out: no tracker id, so status derives it from the
    contact and the request (the starter's tracker_id_for) and answers it; one GetItem, nothing else."""
    from holdline.dal import aws
    from holdline.logic.starter import tracker_id_for

    contact = str(uuid.uuid4())
    started = call(starter.handler, connect_event(GOOD, contact_id=contact))
    assert started["trackerId"] == tracker_id_for("transfer", contact, contact)
    calls: list[str] = []
    real = aws.client

    def spy(service: str) -> Any:
        client = real(service)

        class Spy:
            def __getattr__(self, name: str) -> Any:
                calls.append(f"{service}.{name}")
                return getattr(client, name)

        return Spy()

    monkeypatch.setattr(aws, "client", spy)
    found = call(status.handler, connect_event({}, contact_id=contact))
    assert found["status"] in {"RUNNING", "SUCCEEDED"} and found["trackerId"] == started["trackerId"]
    assert calls == ["dynamodb.get_item"]
    # Another contact, or another request of this contact, is not this transfer.
    assert call(status.handler, connect_event({}))["status"] == "NOT_FOUND"
    other = call(status.handler, connect_event({"requestId": "r-2"}, contact_id=contact))
    assert other["status"] == "NOT_FOUND" and "trackerId" not in other


def test_status_finds_a_transfer_started_with_its_own_request_id(
    stack: LocalStack, connect_event: Any, call: Any
) -> None:
    contact = str(uuid.uuid4())
    started = call(starter.handler, connect_event({**GOOD, "requestId": "r-7"}, contact_id=contact))
    found = call(status.handler, connect_event({"requestId": "r-7"}, contact_id=contact))
    assert found["trackerId"] == started["trackerId"] and found["status"] in {"RUNNING", "SUCCEEDED"}
    assert call(status.handler, connect_event({}, contact_id=contact))["status"] == "NOT_FOUND"
    # Nonsense in the request key costs no read and finds nothing.
    for bad in ({"requestId": "r 7"}, {"operation": "launch-rockets"}):
        assert call(status.handler, connect_event(bad, contact_id=contact))["status"] == "NOT_FOUND"


def test_status_reads_only_the_tracker(
    stack: LocalStack, connect_event: Any, call: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One GetItem, never DescribeExecution (15/s quota): any other AWS call fails this test."""
    from holdline.dal import aws

    started = call(starter.handler, connect_event(GOOD))
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
    call(status.handler, connect_event({"trackerId": started["trackerId"]}))
    assert calls == ["dynamodb.get_item"]


def _put_row(stack: LocalStack, **fields: Any) -> str:
    """A tracker row as the starter and the state machine leave it, written directly."""
    now = int(time.time())
    row = {
        "trackerId": f"transfer-{uuid.uuid4().hex}",
        "operation": "transfer",
        "status": "RUNNING",
        "step": "DEBITING",
        "stepsDone": 0,
        "stepsTotal": 3,
        "createdAt": now,
        "expiresAt": now + 86400,
        "request": {"amount": "1.00", "currency": "USD"},
        **fields,
    }
    serializer = TypeSerializer()
    stack.client("dynamodb").put_item(
        TableName="TrackerTable", Item={k: serializer.serialize(v) for k, v in row.items()}
    )
    return str(row["trackerId"])


def test_rows_past_their_ttl_are_not_found(stack: LocalStack, connect_event: Any, lambda_context: Any) -> None:
    """DynamoDB deletes expired rows up to days late: an expired row that is still there is not an answer."""
    expired = _put_row(stack, status="SUCCEEDED", step="DONE", expiresAt=int(time.time()) - 1)
    alive = _put_row(stack, status="SUCCEEDED", step="DONE", confirmationNumber="HL0000000001")
    assert tracker_row(stack, expired) is not None  # still in the table
    for handler in (status.handler, results.handler):
        answer = handler(connect_event({"trackerId": expired}), lambda_context)
        assert answer == {"status": "NOT_FOUND", "keepWaiting": "false", "errorCode": "NOT_FOUND"}
        assert handler(connect_event({"trackerId": alive}), lambda_context)["status"] == "SUCCEEDED"


def test_hold_loop_guard(stack: LocalStack, connect_event: Any, call: Any) -> None:
    from holdline.config import get_settings

    limit = get_settings().max_hold_seconds
    now = int(time.time())
    too_long = _put_row(stack, createdAt=now - limit - 5)
    answer = call(status.handler, connect_event({"trackerId": too_long}))
    assert answer["status"] == "RUNNING"
    assert (answer["keepWaiting"], answer.get("holdExceeded"), answer["nextPollSeconds"]) == ("false", "true", "0")
    assert int(answer["elapsedSeconds"]) >= limit
    under = call(status.handler, connect_event({"trackerId": _put_row(stack, createdAt=now - limit + 30)}))
    assert under["keepWaiting"] == "true" and "holdExceeded" not in under
    # A final answer is final however long it took: no callback offer for a finished transfer.
    done = _put_row(stack, status="SUCCEEDED", step="DONE", createdAt=now - limit - 5)
    final = call(status.handler, connect_event({"trackerId": done}))
    assert final["keepWaiting"] == "false" and "holdExceeded" not in final


def _iso(seconds_ago: float) -> str:
    return (
        (datetime.now(UTC) - timedelta(seconds=seconds_ago)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


@pytest.mark.parametrize(
    ("poll", "step", "seconds_in_step", "expected"),
    [
        (1, "DEBITING", 0, 3),  # a 3 s step just entered: come back when it should be done
        (1, "CONFIRMING", 0, 2),
        (1, "DEBITING", 2.5, 1),  # nearly done: the shortest hold
        (1, "DEBITING", 60, 1),  # overdue: the shortest hold, never 0 or negative
        (1, "STARTED", 0, 1),  # no step yet: the shortest hold
        (1, "NO_SUCH_STEP", 0, 1),  # a step the workflow does not know
        (3, "CONFIRMING", 0, 3),  # never below PollSeconds
        (1, "CREDITING", None, 3),  # no updatedAt: the step's whole duration
    ],
)
def test_next_poll_follows_the_step(poll: int, step: str, seconds_in_step: float | None, expected: int) -> None:
    from holdline.config import Settings
    from holdline.logic.tracking import next_poll_seconds
    from holdline.workflows import TRANSFER

    row: dict[str, Any] = {"step": step}
    if seconds_in_step is not None:
        row["updatedAt"] = _iso(seconds_in_step)
    assert next_poll_seconds(row, TRANSFER, Settings(poll_seconds=poll), time.time()) == expected


def test_next_poll_is_capped_for_long_steps() -> None:
    from holdline.config import Settings
    from holdline.logic.tracking import next_poll_seconds
    from holdline.workflows import TRANSFER, Workflow

    slow = Workflow(**{**TRANSFER.__dict__, "steps": {"WAITING_FOR_BANK": 120}})
    assert next_poll_seconds({"step": "WAITING_FOR_BANK"}, slow, Settings(poll_seconds=3), time.time()) == 9


def test_status_answer_carries_the_adaptive_poll(stack: LocalStack, connect_event: Any, call: Any) -> None:
    from holdline.config import get_settings

    poll = get_settings().poll_seconds
    fresh = _put_row(stack, step="DEBITING", updatedAt=_iso(0))
    answer = call(status.handler, connect_event({"trackerId": fresh}))
    assert answer["nextPollSeconds"] == str(max(poll, 3)) and answer["keepWaiting"] == "true"


def test_the_shipped_lookup_event_finds_the_shipped_starters_transfer(stack: LocalStack, call: Any) -> None:
    """events/status-lookup.json is what the flow's lookup sends after events/starter.json's start went unheard
    (same contact, no tracker id): for `sam local invoke` and the README."""
    from tests.conftest import load_event

    started = call(starter.handler, load_event("starter.json"))
    found = call(status.handler, load_event("status-lookup.json"))
    assert started["status"] == "STARTED" and found["trackerId"] == started["trackerId"]
    assert found["status"] in {"RUNNING", "SUCCEEDED"}
