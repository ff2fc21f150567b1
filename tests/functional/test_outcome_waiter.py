"""The outcome waiter through the local stack's Lambda API, against its DynamoDB and the real saga.

Timing is `make bench`'s business (holdline_local/bench/latency.py); here: what it answers, and that it
answers after the row changed, not before."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

from holdline_local.stack import LocalStack

GOOD = {"fromAccount": "CHK-00011111", "toAccount": "SAV-00022222", "amount": "4.00", "currency": "USD"}


def _row(tracker_id: str, status: str, *, expires_in: int = 86400) -> dict[str, Any]:
    now = int(time.time())
    return {
        "trackerId": {"S": tracker_id},
        "operation": {"S": "transfer"},
        "status": {"S": status},
        "step": {"S": "CREDITING" if status == "RUNNING" else "DONE"},
        "stepsDone": {"N": "1"},
        "stepsTotal": {"N": "3"},
        "createdAt": {"N": str(now)},
        "expiresAt": {"N": str(now + expires_in)},
        "request": {"M": {"amount": {"S": "4.00"}, "currency": {"S": "USD"}}},
    }


def _waiter_event(connect_event: Any, tracker_id: str) -> dict[str, Any]:
    return connect_event({"trackerId": tracker_id})


def test_the_waiter_answers_once_the_row_turns_final(stack: LocalStack, connect_event: Any) -> None:
    tracker_id = f"transfer-{uuid.uuid4().hex}"
    ddb = stack.client("dynamodb")
    ddb.put_item(TableName="TrackerTable", Item=_row(tracker_id, "RUNNING"))
    settled = threading.Event()

    def settle() -> None:
        time.sleep(1.0)
        ddb.update_item(
            TableName="TrackerTable",
            Key={"trackerId": {"S": tracker_id}},
            UpdateExpression="SET #s = :s, step = :d",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":s": {"S": "SUCCEEDED"}, ":d": {"S": "DONE"}},
        )
        settled.set()

    thread = threading.Thread(target=settle)
    thread.start()
    answer = stack.invoke("OutcomeWaiterFunction", _waiter_event(connect_event, tracker_id))
    thread.join()
    assert settled.is_set()
    assert (answer["status"], answer["keepWaiting"], answer["step"]) == ("SUCCEEDED", "false", "DONE")


def test_the_waiter_follows_a_real_transfer_to_its_end(stack: LocalStack, connect_event: Any) -> None:
    started = stack.invoke("StarterFunction", connect_event(GOOD))
    assert started["status"] == "STARTED"
    answer = stack.invoke("OutcomeWaiterFunction", _waiter_event(connect_event, started["trackerId"]))
    assert (answer["status"], answer["keepWaiting"], answer["stepsDone"]) == ("SUCCEEDED", "false", "3")
    assert stack.invoke("ResultsFunction", _waiter_event(connect_event, started["trackerId"]))["status"] == "SUCCEEDED"


def test_an_expired_or_unknown_tracker_is_not_found_at_once(stack: LocalStack, connect_event: Any) -> None:
    expired = f"transfer-{uuid.uuid4().hex}"
    stack.client("dynamodb").put_item(TableName="TrackerTable", Item=_row(expired, "RUNNING", expires_in=-60))
    for tracker_id in (expired, f"transfer-{uuid.uuid4().hex}"):
        answer = stack.invoke("OutcomeWaiterFunction", _waiter_event(connect_event, tracker_id))
        assert (answer["status"], answer["keepWaiting"], answer["errorCode"]) == ("NOT_FOUND", "false", "NOT_FOUND")
