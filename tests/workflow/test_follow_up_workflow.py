"""The follow-up workflow (a second workflow on the same starter/tracker/state-machine plumbing): the real
ASL on moto's engine, the real handlers, and the Connect stand-in with injected faults."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from holdline.handlers import follow_up, results, starter, status
from holdline_local.connect_standin import ConnectStandIn
from holdline_local.stack import LocalStack
from tests.conftest import load_event
from tests.helpers import history, tracker_row, wait_for_execution
from tests.probes import run_state_machine

MACHINE = "FollowUpStateMachine"


@pytest.fixture
def connect(stack: LocalStack) -> Iterator[ConnectStandIn]:
    assert stack.connect is not None
    stack.connect.clear_faults()
    yield stack.connect
    stack.connect.clear_faults()


def dead_letters(stack: LocalStack) -> list[dict[str, Any]]:
    sqs = stack.client("sqs")
    url = stack.names["FollowUpDeadLetterQueue"]
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], WaitTimeSeconds=0)
    for message in got.get("Messages", []):
        sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return got.get("Messages", [])


def attempts(stack: LocalStack, tracker_id: str) -> int:
    return sum(
        1
        for event in history(stack, tracker_id, MACHINE)
        if event["type"] == "TaskScheduled" and event["taskScheduledEventDetails"]["resourceType"] == "lambda"
    )


def start_from_flow(connect_event: Any, call: Any, contact_id: str = "", **parameters: str) -> str:
    event = connect_event({"operation": "followUp", **parameters}, contact_id=contact_id)
    answer = call(starter.handler, event)
    assert answer["status"] == "STARTED", answer
    return str(answer["trackerId"])


def test_callback_from_a_flow_creates_one_task(
    stack: LocalStack, connect: ConnectStandIn, connect_event: Any, lambda_context: Any, call: Any
) -> None:
    contact_id = str(uuid.uuid4())
    tracker_id = start_from_flow(connect_event, call, contact_id=contact_id, reason="CALLBACK_REQUESTED")
    assert tracker_id.startswith("followUp-")
    assert wait_for_execution(stack, tracker_id, machine=MACHINE)["status"] == "SUCCEEDED"
    poll = connect_event({"trackerId": tracker_id})
    assert call(status.handler, poll)["stepsTotal"] == "1"
    answer = call(results.handler, poll)
    assert answer["status"] == "SUCCEEDED"
    (task,) = [t for t in connect.tasks if t.client_token == tracker_id]
    assert answer["taskContactId"] == task.contact_id
    assert task.request["PreviousContactId"] == contact_id
    assert task.request["References"]["trackerId"] == {"Value": tracker_id, "Type": "STRING"}


@pytest.mark.parametrize("code", ["ThrottlingException", "ServiceQuotaExceededException", "ResourceNotReadyException"])
def test_transient_connect_errors_are_retried_and_create_one_task(
    stack: LocalStack, connect: ConnectStandIn, connect_event: Any, call: Any, code: str
) -> None:
    connect.fail_next(code, times=2)
    tracker_id = start_from_flow(connect_event, call)
    assert wait_for_execution(stack, tracker_id, machine=MACHINE)["status"] == "SUCCEEDED"
    assert attempts(stack, tracker_id) == 3
    assert connect.count(tracker_id) == 1
    row = tracker_row(stack, tracker_id)
    assert row is not None and row["status"]["S"] == "SUCCEEDED"


@pytest.mark.parametrize(
    ("code", "error"),
    [("ResourceNotFoundException", "ConnectResourceNotFound"), ("AccessDeniedException", "ConnectAccessDenied")],
)
def test_permanent_errors_fail_at_once_into_the_dead_letter_queue(
    stack: LocalStack,
    connect: ConnectStandIn,
    connect_event: Any,
    lambda_context: Any,
    code: str,
    error: str,
    call: Any,
) -> None:
    dead_letters(stack)
    connect.fail_next(code)
    tracker_id = start_from_flow(connect_event, call)
    wait_for_execution(stack, tracker_id, machine=MACHINE)
    assert attempts(stack, tracker_id) == 1
    assert connect.count(tracker_id) == 0
    answer = call(results.handler, connect_event({"trackerId": tracker_id}))
    assert answer["status"] == "FAILED" and answer["errorCode"] == "TASK_NOT_CREATED"
    (message,) = dead_letters(stack)
    attributes = {k: v["StringValue"] for k, v in message["MessageAttributes"].items()}
    assert attributes["ERROR_CODE"] == error
    assert attributes["EXHAUSTED_RETRY_CONDITION"] == "NotRetryable"
    assert attributes["TARGET_ARN"].endswith(":function:CreateFollowUpTaskFunction")
    assert json.loads(message["Body"])["trackerId"] == tracker_id


def test_retries_are_bounded(stack: LocalStack, connect: ConnectStandIn, connect_event: Any, call: Any) -> None:
    dead_letters(stack)
    connect.fail_next("ThrottlingException", times=50)
    tracker_id = start_from_flow(connect_event, call)
    wait_for_execution(stack, tracker_id, machine=MACHINE)
    assert attempts(stack, tracker_id) == 6  # the first try and MaxAttempts 5
    (message,) = dead_letters(stack)
    assert message["MessageAttributes"]["EXHAUSTED_RETRY_CONDITION"]["StringValue"] == "MaximumRetryAttempts"
    assert message["MessageAttributes"]["ERROR_CODE"]["StringValue"] == "ConnectThrottled"


def test_failed_transfer_opens_one_masked_task_linked_to_the_call(
    stack: LocalStack, connect: ConnectStandIn, connect_event: Any, call: Any
) -> None:
    transfer = call(
        starter.handler, connect_event({"fromAccount": "CHK-00011111", "toAccount": "CHK-00000404", "amount": "3.00"})
    )
    wait_for_execution(stack, transfer["trackerId"])
    row = tracker_row(stack, transfer["trackerId"])
    assert row is not None
    detail = {
        "trackerId": transfer["trackerId"],
        "reasonCode": "REFUND_PENDING",
        "contactId": row["contactId"]["S"],
        "instanceArn": row["instanceArn"]["S"],
    }
    event = {**load_event("failure-event.json"), "detail": detail}  # what EventBridge delivers: the whole event
    first = call(follow_up.transfer_failed, event)
    again = call(follow_up.transfer_failed, event)  # a repeated event: the same follow-up
    assert first == again
    wait_for_execution(stack, first["followUpTrackerId"], machine=MACHINE)
    (task,) = [t for t in connect.tasks if t.client_token == first["followUpTrackerId"]]
    assert task.request["PreviousContactId"] == row["contactId"]["S"]
    description = task.request["Description"]
    assert "****1111" in description and "****0404" in description
    assert "CHK-00011111" not in description and "00000404" not in description.replace("****0404", "")
    # The ledger as the bank holds it when the task is made (the account was unknown: nothing moved).
    assert "Ledger at the bank now: debit not found; credit not found; refund not found." in description
    assert task.request["References"]["relatedTrackerId"]["Value"] == transfer["trackerId"]


def _run_on_its_own(stack: LocalStack, tracker_id: str) -> dict[str, Any]:
    """The deployed follow-up state machine started as the starter starts it (name = tracker id, the same
    input), on whatever row the test wrote, if any."""
    stack.client("stepfunctions").start_execution(
        stateMachineArn=stack.arn(MACHINE),
        name=tracker_id,
        input=json.dumps({"trackerId": tracker_id, "operation": "followUp"}),
    )
    return wait_for_execution(stack, tracker_id, machine=MACHINE)


def test_a_missing_follow_up_row_still_reaches_the_dead_letter_queue(stack: LocalStack) -> None:
    """ReadRequest finds no row: its GetItem answers without ``Item``. On AWS the ResultSelector that read
    ``$.Item.request...`` failed the execution with States.Runtime, which its Catch on States.ALL cannot take,
    and nobody heard of the follow-up. Now the missing row is a dead letter (TrackerNotFound), and no row is
    made by recording the failure."""
    dead_letters(stack)
    tracker_id = f"followUp-missing-{uuid.uuid4().hex[:12]}"
    described = _run_on_its_own(stack, tracker_id)
    assert described["status"] == "SUCCEEDED", described
    (message,) = dead_letters(stack)
    attributes = {k: v["StringValue"] for k, v in message["MessageAttributes"].items()}
    assert attributes["ERROR_CODE"] == "TrackerNotFound"
    assert attributes["EXHAUSTED_RETRY_CONDITION"] == "NotRetryable"
    assert tracker_id in attributes["ERROR_MESSAGE"]
    assert json.loads(message["Body"])["trackerId"] == tracker_id
    assert tracker_row(stack, tracker_id) is None


def test_the_dead_letter_is_sent_after_a_timeout_whose_cause_is_empty(stack: LocalStack) -> None:
    """A task's States.Timeout reaches the Catch as ``{"Error": "States.Timeout", "Cause": ""}`` (AWS gives no
    cause, nor does the local engine), and SQS refuses an empty message attribute: the ERROR_MESSAGE taken
    from the cause made the DeadLetter step fail, so the execution failed and the queue stayed empty.

    The deployed definition, entered where CreateTask's Catch leads (a CreateTask timeout cannot be made
    here: the function's own Timeout, 10 s, ends it first, as Sandbox.Timedout), on a RUNNING row."""
    dead_letters(stack)
    tracker_id = f"followUp-timeout-{uuid.uuid4().hex[:12]}"
    stack.client("dynamodb").put_item(
        TableName="TrackerTable",
        Item={"trackerId": {"S": tracker_id}, "status": {"S": "RUNNING"}, "operation": {"S": "followUp"}},
    )
    sfn = stack.client("stepfunctions")
    deployed = sfn.describe_state_machine(stateMachineArn=stack.arn(MACHINE))
    definition = {**json.loads(deployed["definition"]), "StartAt": "RetriesExhausted"}
    failure = {"Error": "States.Timeout", "Cause": ""}
    described = run_state_machine(
        stack, definition, deployed["roleArn"], execution_input={"trackerId": tracker_id, "failure": failure}
    )
    assert described["status"] == "SUCCEEDED", described
    (message,) = dead_letters(stack)
    attributes = {k: v["StringValue"] for k, v in message["MessageAttributes"].items()}
    assert attributes["ERROR_CODE"] == "States.Timeout"
    assert attributes["ERROR_MESSAGE"].startswith("States.Timeout")
    assert attributes["EXHAUSTED_RETRY_CONDITION"] == "MaximumRetryAttempts"
    row = tracker_row(stack, tracker_id)
    assert row is not None and row["status"]["S"] == "FAILED" and row["failureError"]["S"] == "States.Timeout"


def test_a_row_without_a_follow_up_request_is_recorded_and_dead_lettered(stack: LocalStack) -> None:
    """The row is there but holds no request (no ``delaySeconds`` to wait): no States.Runtime from reading it,
    the row ends FAILED and the reason reaches the dead-letter queue."""
    dead_letters(stack)
    tracker_id = f"followUp-norequest-{uuid.uuid4().hex[:12]}"
    stack.client("dynamodb").put_item(
        TableName="TrackerTable",
        Item={"trackerId": {"S": tracker_id}, "status": {"S": "RUNNING"}, "operation": {"S": "followUp"}},
    )
    described = _run_on_its_own(stack, tracker_id)
    assert described["status"] == "SUCCEEDED", described
    (message,) = dead_letters(stack)
    assert message["MessageAttributes"]["ERROR_CODE"]["StringValue"] == "TransferInvalid"
    row = tracker_row(stack, tracker_id)
    assert row is not None and row["status"]["S"] == "FAILED" and row["failureError"]["S"] == "TransferInvalid"
