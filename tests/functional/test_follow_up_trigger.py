"""A transfer that ends needing a person opens one task for an agent, end to end on the local stack:
tracker FAILED -> stream -> notifier -> "Holdline Task Failed" on the bus -> the trigger's rule
(FollowUpTriggerFunctionTransferNeedsAPerson) -> FollowUpTriggerFunction -> the follow-up workflow -> the
Connect stand-in."""

from __future__ import annotations

import time
from typing import Any

from holdline_local.stack import LocalStack
from tests.functional.test_failure_events import running_row
from tests.helpers import tracker_row, wait_for_execution
from tests.workflow.test_follow_up_workflow import MACHINE


def fail_row(stack: LocalStack, tracker_id: str, error: str) -> None:
    """The saga's final write (RecordRefundPending / RecordFailed), as the ASL makes it."""
    stack.client("dynamodb").update_item(
        TableName="TrackerTable",
        Key={"trackerId": {"S": tracker_id}},
        UpdateExpression="SET #s = :f, #step = :done, refunded = :no, failureError = :e",
        ConditionExpression="#s = :running",
        ExpressionAttributeNames={"#s": "status", "#step": "step"},
        ExpressionAttributeValues={
            ":f": {"S": "FAILED"},
            ":done": {"S": "DONE"},
            ":no": {"BOOL": False},
            ":e": {"S": error},
            ":running": {"S": "RUNNING"},
        },
    )


def follow_up_tasks(stack: LocalStack, related: str) -> list[Any]:
    assert stack.connect is not None
    return [
        t
        for t in stack.connect.tasks
        if t.request.get("References", {}).get("relatedTrackerId", {}).get("Value") == related
    ]


def settle(stack: LocalStack) -> None:
    """Let the stream pump and the rule-target deliveries catch up."""
    assert stack.event_targets is not None and stack.pump is not None
    stack.event_targets.wait()
    stack.pump.drain()


def test_refund_pending_opens_one_task(stack: LocalStack) -> None:
    tracker_id = running_row(stack, int(time.time()), step="REFUNDING")
    fail_row(stack, tracker_id, "RefundPending")
    deadline = time.monotonic() + 30
    while not follow_up_tasks(stack, tracker_id):
        settle(stack)
        assert time.monotonic() < deadline, "no follow-up task"
        time.sleep(0.05)
    settle(stack)
    (task,) = follow_up_tasks(stack, tracker_id)
    assert task.request["Name"] == "Refund pending after a failed transfer"
    row = tracker_row(stack, task.client_token)
    assert row is not None and row["operation"]["S"] == "followUp"
    wait_for_execution(stack, task.client_token, machine=MACHINE)
    assert tracker_row(stack, task.client_token)["status"]["S"] == "SUCCEEDED"  # type: ignore[index]


def test_a_business_refusal_needs_no_person(stack: LocalStack) -> None:
    tracker_id = running_row(stack, int(time.time()), step="DEBITING")
    fail_row(stack, tracker_id, "InsufficientFunds")
    for _ in range(5):
        settle(stack)
        time.sleep(0.05)
    assert follow_up_tasks(stack, tracker_id) == []
