"""Failures are never silent: on the local stack, every way a tracker becomes FAILED produces exactly one
"Holdline Task Failed" event with the documented schema; dead letters keep their attributes and replay once.

The local stack does what AWS does here: executions put their status change events on the default bus, the
ReconcilerFunctionExecutionStatus delivers them to the reconciler, the tracker's stream reaches the notifier, and each
function runs in its own environment with its own role. Tests that call a handler in this process do so as
that function (``stack.as_function``); a lost status event is a disabled rule.
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest

from holdline.config import get_settings
from holdline.handlers import notifications, starter
from holdline.logic import reconcile
from holdline_local.dlq import DeadLetters, local_queue_url
from holdline_local.sandbox_bank import Fault
from holdline_local.stack import LocalStack
from tests.conftest import REPO
from tests.helpers import tracker_row, wait_for_execution

SCHEMA = json.loads((REPO / "events" / "failure-event.json").read_text())


class EventCapture:
    """A rule on the Holdline bus with an SQS target: what an operator's consumer would receive."""

    def __init__(self, stack: LocalStack) -> None:
        self.stack = stack
        self.sqs = stack.client("sqs")
        name = f"capture-{uuid.uuid4().hex[:8]}"
        self.url = self.sqs.create_queue(QueueName=name)["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events = stack.client("events")
        events.put_rule(
            Name=name,
            EventBusName="HoldlineEventBus",
            EventPattern=json.dumps({"source": ["holdline"], "detail-type": ["Holdline Task Failed"]}),
        )
        events.put_targets(Rule=name, EventBusName="HoldlineEventBus", Targets=[{"Id": "capture", "Arn": arn}])
        self.seen: list[dict[str, Any]] = []

    def settle(self) -> None:
        self.stack.settle()

    def events_for(self, tracker_id: str) -> list[dict[str, Any]]:
        self.settle()
        while True:
            batch = self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=10).get("Messages", [])
            if not batch:
                break
            for message in batch:
                self.seen.append(json.loads(message["Body"]))
                self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=message["ReceiptHandle"])
        return [e for e in self.seen if e["detail"]["trackerId"] == tracker_id]


@pytest.fixture(scope="module")
def capture(stack: LocalStack) -> EventCapture:
    return EventCapture(stack)


def assert_schema(event: dict[str, Any]) -> dict[str, Any]:
    assert event["source"] == SCHEMA["source"] and event["detail-type"] == SCHEMA["detail-type"]
    detail = event["detail"]
    assert set(detail) == set(SCHEMA["detail"]), set(detail) ^ set(SCHEMA["detail"])
    assert set(detail["additionalInfo"]) == set(SCHEMA["detail"]["additionalInfo"])
    assert set(detail["request"]) == set(SCHEMA["detail"]["request"])
    assert isinstance(detail["additionalInfo"]["retryable"], bool)
    assert isinstance(detail["additionalInfo"]["retryDelay"], int)
    assert detail["dedupeKey"] == f"{detail['trackerId']}:FAILED"
    return dict(detail)


def start(stack: LocalStack, connect_event: Any, call: Any, **parameters: str) -> str:
    params = {"fromAccount": "CHK-00011111", "toAccount": "SAV-00022222", "amount": "10.00", **parameters}
    answer = call(starter.handler, connect_event(params))
    assert answer["status"] == "STARTED", answer
    return str(answer["trackerId"])


def status_change(tracker_id: str, status: str) -> dict[str, Any]:
    """What EventBridge would deliver for the execution named after the tracker."""
    return {
        "Source": "aws.states",
        "DetailType": "Step Functions Execution Status Change",
        "Detail": json.dumps(
            {
                "executionArn": f"arn:aws:states:us-east-1:123456789012:execution:TransferStateMachine:{tracker_id}",
                "stateMachineArn": "arn:aws:states:us-east-1:123456789012:stateMachine:TransferStateMachine",
                "name": tracker_id,
                "status": status,
                "input": json.dumps({"trackerId": tracker_id, "operation": "transfer"}),
            }
        ),
    }


def running_row(stack: LocalStack, created_at: int, step: str = "DEBITING") -> str:
    tracker_id = f"transfer-{uuid.uuid4().hex}"
    stack.client("dynamodb").put_item(
        TableName="TrackerTable",
        Item={
            "trackerId": {"S": tracker_id},
            "operation": {"S": "transfer"},
            "status": {"S": "RUNNING"},
            "step": {"S": step},
            "contactId": {"S": "c-1"},
            "instanceArn": {"S": "arn:aws:connect:us-east-1:123456789012:instance/i-1"},
            "createdAt": {"N": str(created_at)},
            "request": {"M": {"fromAccount": {"S": "CHK-00011111"}, "toAccount": {"S": "SAV-00022222"}}},
        },
    )
    return tracker_id


def status_of(stack: LocalStack, tracker_id: str) -> tuple[str, str | None]:
    row = tracker_row(stack, tracker_id)
    assert row is not None
    return row["status"]["S"], row.get("failureError", {}).get("S")


# ---- the saga's failures --------------------------------------------------------------------------------------
def test_business_refusal_one_masked_event(
    stack: LocalStack, capture: EventCapture, connect_event: Any, call: Any
) -> None:
    tracker_id = start(stack, connect_event, call, fromAccount="CHK-00000402", amount="250.00")
    wait_for_execution(stack, tracker_id)
    [event] = capture.events_for(tracker_id)
    detail = assert_schema(event)
    assert (detail["reasonCode"], detail["error"], detail["step"]) == (
        "INSUFFICIENT_FUNDS",
        "InsufficientFunds",
        "DEBITING",
    )
    assert detail["additionalInfo"] == {"retryable": False, "retryDelay": 0, "manualReviewRequired": False}
    assert detail["request"]["fromAccount"] == "****0402" and detail["failureSource"] == "SAGA"
    assert "CHK-00000402" not in json.dumps(event) and "SAV-00022222" not in json.dumps(event)
    assert event["resources"] == [
        f"{stack.arn('TransferStateMachine').replace(':stateMachine:', ':execution:')}:{tracker_id}"
    ]


def test_exhausted_retries_one_retryable_event(
    stack: LocalStack, capture: EventCapture, connect_event: Any, call: Any
) -> None:
    tracker_id = start(stack, connect_event, call, fromAccount="CHK-00000503")
    wait_for_execution(stack, tracker_id)
    [event] = capture.events_for(tracker_id)
    detail = assert_schema(event)
    assert detail["reasonCode"] == "BANK_UNAVAILABLE" and detail["step"] == "REFUNDING"
    assert detail["additionalInfo"]["retryable"] is True and detail["additionalInfo"]["retryDelay"] > 0


def test_refund_pending_is_flagged_for_a_person(stack: LocalStack, capture: EventCapture) -> None:
    # The saga's RecordRefundPending write, as the ASL makes it (the sandbox bank cannot fail a refund after a
    # debit that landed, so the test makes the tracker change the state machine would make).
    tracker_id = running_row(stack, int(time.time()), step="REFUNDING")
    stack.client("dynamodb").update_item(
        TableName="TrackerTable",
        Key={"trackerId": {"S": tracker_id}},
        UpdateExpression="SET #s = :f, #step = :done, refunded = :no, failureError = :e",
        ExpressionAttributeNames={"#s": "status", "#step": "step"},
        ExpressionAttributeValues={
            ":f": {"S": "FAILED"},
            ":done": {"S": "DONE"},
            ":no": {"BOOL": False},
            ":e": {"S": "RefundPending"},
        },
    )
    [event] = capture.events_for(tracker_id)
    detail = assert_schema(event)
    assert detail["reasonCode"] == "REFUND_PENDING" and detail["step"] == "REFUNDING"
    assert detail["additionalInfo"] == {"retryable": False, "retryDelay": 0, "manualReviewRequired": True}


def test_success_and_other_changes_announce_nothing(
    stack: LocalStack, capture: EventCapture, connect_event: Any, call: Any
) -> None:
    tracker_id = start(stack, connect_event, call)
    assert wait_for_execution(stack, tracker_id)["status"] == "SUCCEEDED"
    assert capture.events_for(tracker_id) == []


# ---- the reconciler: killed from outside, timed out ----------------------------------------------------------
@pytest.fixture
def held_debit(stack: LocalStack) -> Iterator[Fault]:
    """The bank holds the next debit until released: the execution is caught mid-debit."""
    assert stack.bank is not None
    fault = stack.bank.inject("hold", leg="debit", times=1, seconds=20)
    yield fault
    fault.release()
    stack.bank.clear_faults(fault)


def test_aborted_execution_ends_with_a_final_tracker_and_one_event(
    stack: LocalStack, capture: EventCapture, connect_event: Any, call: Any, held_debit: Fault
) -> None:
    """AWS puts an ABORTED status change on the default bus; the reconciler (ReconcilerFunctionExecutionStatus's target)
    finalises the tracker, and the stream's notifier announces it once."""
    tracker_id = start(stack, connect_event, call)
    assert held_debit.entered.wait(20)
    arn = stack.arn("TransferStateMachine").replace(":stateMachine:", ":execution:") + ":" + tracker_id
    stack.client("stepfunctions").stop_execution(executionArn=arn, error="Operator", cause="stopped by hand")
    held_debit.release()
    assert wait_for_execution(stack, tracker_id)["status"] == "ABORTED"
    [event] = capture.events_for(tracker_id)
    assert status_of(stack, tracker_id) == ("FAILED", "ExecutionAborted")
    detail = assert_schema(event)
    assert (detail["reasonCode"], detail["failureSource"], detail["step"]) == (
        "EXECUTION_ABORTED",
        "RECONCILER",
        "DEBITING",
    )
    # Stopped mid-debit: the bank call may have landed, so a person must look.
    assert detail["additionalInfo"]["manualReviewRequired"] is True

    # The same status event again (EventBridge is at-least-once) changes nothing and announces nothing.
    stack.client("events").put_events(Entries=[status_change(tracker_id, "ABORTED")])
    assert len(capture.events_for(tracker_id)) == 1


def test_reconciler_never_overrides_the_saga(
    stack: LocalStack, capture: EventCapture, connect_event: Any, call: Any
) -> None:
    tracker_id = start(stack, connect_event, call)
    wait_for_execution(stack, tracker_id)
    with stack.as_function("ReconcilerFunction"):
        assert reconcile.reconcile_execution({"status": "TIMED_OUT", "name": tracker_id}) is False
    assert status_of(stack, tracker_id) == ("SUCCEEDED", None)
    assert capture.events_for(tracker_id) == []


@pytest.fixture
def status_events_lost(stack: LocalStack) -> Iterator[None]:
    """Status change events are best effort: while this holds, the reconciler's rule delivers none."""
    events = stack.client("events")
    events.disable_rule(Name="ReconcilerFunctionExecutionStatus")
    try:
        yield
    finally:
        events.enable_rule(Name="ReconcilerFunctionExecutionStatus")


# ---- the sweeper: the status event was lost -------------------------------------------------------------------
def test_lost_status_event_is_swept_idempotently(
    stack: LocalStack,
    capture: EventCapture,
    connect_event: Any,
    call: Any,
    held_debit: Fault,
    status_events_lost: None,
) -> None:
    tracker_id = start(stack, connect_event, call)
    assert held_debit.entered.wait(20)
    arn = stack.arn("TransferStateMachine").replace(":stateMachine:", ":execution:") + ":" + tracker_id
    stack.client("stepfunctions").stop_execution(executionArn=arn)
    held_debit.release()
    wait_for_execution(stack, tracker_id)
    assert status_of(stack, tracker_id)[0] == "RUNNING"  # the event was lost: only the sweeper can tell
    with stack.as_function("SweeperFunction"):
        settings = get_settings()
        later = time.time() + settings.sweep_after_seconds + 5  # no status event: only time passes
        # Other tests' leftovers may be due too (oldest first, 50 a run): run until nothing is left over.
        runs = [reconcile.sweep(settings, now=later, sleep=lambda _: None) for _ in range(10)]
        assert not runs[-1].truncated and sum(r.reconciled for r in runs) >= 1
        assert status_of(stack, tracker_id) == ("FAILED", "ExecutionAborted")
        second = reconcile.sweep(settings, now=later, sleep=lambda _: None)
    assert second.reconciled == 0
    [event] = capture.events_for(tracker_id)
    assert assert_schema(event)["failureSource"] == "SWEEPER"


def test_the_schedule_runs_the_sweeper_on_its_own(stack: LocalStack, capture: EventCapture) -> None:
    """No test calls it: SweeperFunctionSchedule fires (rate(5 minutes), on the time scale) and the sweeper finds a row
    whose execution never started, as it would on AWS."""
    tracker_id = running_row(stack, 2_000_000, step="STARTED")  # long past any sweep window
    deadline = time.monotonic() + 5 * 60 * stack.time_scale * 3 + 10
    while status_of(stack, tracker_id)[0] == "RUNNING":
        assert time.monotonic() < deadline, "the scheduled sweeper never ran"
        time.sleep(0.2)
    assert status_of(stack, tracker_id) == ("FAILED", "ExecutionNotStarted")
    [event] = capture.events_for(tracker_id)
    assert assert_schema(event)["failureSource"] == "SWEEPER"


def test_sweeper_is_bounded_and_paced(stack: LocalStack, capture: EventCapture) -> None:
    # Rows far in the past (no execution was ever started for them), so only this test's rows are due.
    base = 1_000_000
    assert stack.scheduler is not None
    with stack.scheduler.paused():  # this test is the only sweeper: the schedule's own runs would take rows
        ids = [running_row(stack, base + i, step="STARTED") for i in range(7)]
        _paced_sweeps(stack, ids, base)
    for tracker_id in ids:
        [event] = capture.events_for(tracker_id)
        assert assert_schema(event)["reasonCode"] == "EXECUTION_NOT_STARTED"


def _paced_sweeps(stack: LocalStack, ids: list[str], base: int) -> None:
    with stack.as_function("SweeperFunction"):
        settings = dataclasses.replace(get_settings(), sweep_max_items=3, sweep_describe_per_second=4)
        now = base + settings.sweep_after_seconds + 10
        pauses: list[float] = []
        report = reconcile.sweep(settings, now=now, sleep=pauses.append)
        assert (report.examined, report.reconciled, report.truncated) == (3, 3, True)
        assert pauses == [0.25, 0.25]  # between DescribeExecution calls, never before the first
        assert [status_of(stack, t)[0] for t in ids] == ["FAILED"] * 3 + ["RUNNING"] * 4  # oldest first
        reports = [reconcile.sweep(settings, now=now, sleep=lambda _: None) for _ in range(3)]
    assert [r.reconciled for r in reports] == [3, 1, 0]
    assert {status_of(stack, t) for t in ids} == {("FAILED", "ExecutionNotStarted")}


def reset_sweep_cursors(stack: LocalStack) -> None:
    """The sweeper's walks start again from the oldest row (tests that expect an order start from here). The
    cursors' item stays (only its positions go): tests that count the table's items see no change."""
    try:
        stack.client("dynamodb").update_item(
            TableName="TrackerTable",
            Key={"trackerId": {"S": "sweeperCursor"}},
            UpdateExpression="REMOVE runningStartKey, failedStartKey",
            ConditionExpression="attribute_exists(trackerId)",
        )
    except stack.client("dynamodb").exceptions.ConditionalCheckFailedException:
        pass  # no run ever saved a position


def waiting_follow_up(stack: LocalStack, created_at: int) -> str:
    """A follow-up row running legitimately past the sweep window: its execution waits in its Delay (7000 s,
    70 s on the test time scale; stopped by the test before)."""
    tracker_id = f"followUp-{uuid.uuid4().hex}"
    stack.client("dynamodb").put_item(
        TableName="TrackerTable",
        Item={
            "trackerId": {"S": tracker_id},
            "operation": {"S": "followUp"},
            "status": {"S": "RUNNING"},
            "step": {"S": "STARTED"},
            "contactId": {"S": "c-1"},
            "createdAt": {"N": str(created_at)},
            "request": {"M": {"reason": {"S": "CALLBACK_REQUESTED"}, "delaySeconds": {"N": "7000"}}},
        },
    )
    stack.client("stepfunctions").start_execution(
        stateMachineArn=stack.arn("FollowUpStateMachine"),
        name=tracker_id,
        input=json.dumps({"trackerId": tracker_id, "operation": "followUp"}),
    )
    return tracker_id


def test_rows_running_past_the_window_do_not_starve_a_stuck_one(stack: LocalStack) -> None:
    """Issue 19: 12 follow-ups waiting in their Delay (healthy: DescribeExecution says RUNNING) are the oldest
    rows due, ahead of a stuck row; the sweeper takes 5 rows a run (sweep_max_items shrunk from 50, as 50+
    healthy rows would be in production). Each run resumes where the last one stopped, so the stuck row is
    reached within N = ceil(13 / 5) = 3 runs. Before the cursor every run took the same 5 oldest rows: never."""
    base = 10  # rows due are those created before base + 13: only this test's (other tests use 1, 2, 100, ...)
    assert stack.scheduler is not None
    sfn = stack.client("stepfunctions")
    machine = stack.arn("FollowUpStateMachine").replace(":stateMachine:", ":execution:")
    with stack.scheduler.paused():  # this test is the only sweeper
        stack.settle()
        reset_sweep_cursors(stack)
        healthy = [waiting_follow_up(stack, base + i) for i in range(12)]
        stuck = running_row(stack, base + 12, step="STARTED")  # no execution was ever started for it
        try:
            with stack.as_function("SweeperFunction"):
                settings = dataclasses.replace(get_settings(), sweep_max_items=5)
                now = base + 13 + settings.sweep_after_seconds
                reports = [reconcile.sweep(settings, now=now, sleep=lambda _: None) for _ in range(3)]
                assert status_of(stack, stuck) == ("FAILED", "ExecutionNotStarted")
                # The third run reached the newest row due: the fourth starts again from the oldest.
                reports.append(reconcile.sweep(settings, now=now, sleep=lambda _: None))
            assert [(r.examined, r.still_running, r.reconciled, r.truncated) for r in reports] == [
                (5, 5, 0, True),
                (5, 5, 0, True),
                (3, 2, 1, False),
                (5, 5, 0, True),
            ]
            assert {status_of(stack, t)[0] for t in healthy} == {"RUNNING"}  # examined, left alone
        finally:
            for tracker_id in healthy:
                sfn.stop_execution(executionArn=f"{machine}:{tracker_id}")


def test_a_cursor_outside_the_key_condition_is_dropped(stack: LocalStack) -> None:
    """DynamoDB refuses an ExclusiveStartKey outside a Query's key condition (ValidationException); a cursor
    saved under a later cutoff (a run with a later clock, a SweepAfterSeconds made longer) is dropped and the
    walk starts from the oldest row, instead of failing every run (AWS) or finding nothing (moto, which starts
    after the position)."""
    base = 30
    assert stack.scheduler is not None
    with stack.scheduler.paused():
        stack.settle()
        tracker_id = running_row(stack, base, step="STARTED")
        with stack.as_function("SweeperFunction"):
            from holdline.dal import tracker_table

            tracker_table.save_sweep_cursor(
                reconcile.RUNNING_CURSOR, {"trackerId": "transfer-later", "status": "RUNNING", "createdAt": base + 500}
            )
            settings = get_settings()
            report = reconcile.sweep(settings, now=base + 1 + settings.sweep_after_seconds, sleep=lambda _: None)
            assert tracker_table.sweep_cursor(reconcile.RUNNING_CURSOR) is None  # reached the end: forgotten
    assert (report.examined, report.reconciled) == (1, 1)
    assert status_of(stack, tracker_id) == ("FAILED", "ExecutionNotStarted")


def failed_row(stack: LocalStack, created_at: float, failed_at: float, source: str = "RECONCILER") -> str:
    """A transfer row that became FAILED at ``failed_at`` (an execution aborted from outside) and was never
    announced: written directly (an INSERT, which the notifier's filter does not pass), as a row looks once
    its stream record is gone."""
    tracker_id = f"transfer-{uuid.uuid4().hex}"
    updated_at = datetime.fromtimestamp(failed_at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    stack.client("dynamodb").put_item(
        TableName="TrackerTable",
        Item={
            "trackerId": {"S": tracker_id},
            "operation": {"S": "transfer"},
            "status": {"S": "FAILED"},
            "step": {"S": "DONE"},
            "contactId": {"S": "c-1"},
            "instanceArn": {"S": "arn:aws:connect:us-east-1:123456789012:instance/i-1"},
            "createdAt": {"N": str(int(created_at))},
            "updatedAt": {"S": updated_at},
            "failureError": {"S": "ExecutionAborted"},
            "failureSource": {"S": source},
            "request": {"M": {"fromAccount": {"S": "CHK-00011111"}, "toAccount": {"S": "SAV-00022222"}}},
        },
    )
    return tracker_id


def test_a_lost_failure_announcement_is_made_once_by_the_sweeper(stack: LocalStack, capture: EventCapture) -> None:
    """Issue 19: a FAILED row with no failureNotifiedAt, failed longer ago than the grace (15 min), gets one
    "Holdline Task Failed" event after one sweep and none after a second; a row that failed a moment ago
    (created long before: a follow-up after its Delay) is left to the notifier."""
    assert stack.scheduler is not None
    with stack.scheduler.paused():  # this test is the only sweeper
        stack.settle()
        reset_sweep_cursors(stack)
        now = time.time()
        with stack.as_function("SweeperFunction"):
            settings = dataclasses.replace(get_settings(), sweep_max_failed_reads=1000)
            grace = settings.sweep_announce_after_seconds
            assert grace == 900
            lost = failed_row(stack, created_at=now - 3 * grace, failed_at=now - 2 * grace)
            fresh = failed_row(stack, created_at=now - 3 * grace, failed_at=now - 10)
            first = reconcile.sweep(settings, now=now, sleep=lambda _: None)
            [event] = capture.events_for(lost)
            assert capture.events_for(fresh) == []
            second = reconcile.sweep(settings, now=now, sleep=lambda _: None)
    assert first.announced >= 1 and second.announced == 0 and second.failed == 0
    assert len(capture.events_for(lost)) == 1
    row = tracker_row(stack, lost)
    assert row is not None and row["failureEventId"]["S"] and "failureNotifiedAt" in row
    detail = assert_schema(event)
    # Aborted from outside, step lost with the stream record: the money may have moved, so a person looks.
    assert (detail["failureSource"], detail["reasonCode"], detail["step"]) == (
        "RECONCILER",
        "EXECUTION_ABORTED",
        "DEBITING",
    )
    assert detail["additionalInfo"] == {"retryable": False, "retryDelay": 0, "manualReviewRequired": True}
    assert "failureNotifiedAt" not in (tracker_row(stack, fresh) or {})


# ---- dead letters ------------------------------------------------------------------------------------------------
def dead_letters(stack: LocalStack) -> DeadLetters:
    return DeadLetters(stack.client, local_queue_url(stack.client("sqs")))


def test_throttled_target_lands_in_its_dlq_with_attributes_and_redrives_once(
    stack: LocalStack, capture: EventCapture
) -> None:
    tracker_id = running_row(stack, int(time.time()), step="CREDITING")
    assert stack.runtime is not None
    # Lambda refuses every hand-off of the event (429): EventBridge retries, then dead-letters it.
    stack.runtime.refuse("ReconcilerFunction", "TooManyRequestsException", times=1000)
    try:
        stack.client("events").put_events(Entries=[status_change(tracker_id, "TIMED_OUT")])
        capture.settle()
    finally:
        stack.runtime.clear_refusals("ReconcilerFunction")
    assert status_of(stack, tracker_id)[0] == "RUNNING"
    letters = dead_letters(stack)
    [message] = [m for m in letters.show("ReconcilerTargetDLQ") if m["body"]["detail"]["name"] == tracker_id]
    assert message["attributes"] == {
        "RULE_ARN": stack.arn("ReconcilerFunctionExecutionStatus"),
        "TARGET_ARN": stack.arn("ReconcilerFunction"),
        "ERROR_CODE": "THROTTLING",
        "ERROR_MESSAGE": "Rate Exceeded.",
        "EXHAUSTED_RETRY_CONDITION": "MaximumRetryAttempts",
        "RETRY_ATTEMPTS": "24",  # the template's RetryPolicy
    }
    listed = {q["queue"]: q for q in letters.summary()}["ReconcilerTargetDLQ"]
    assert (listed["kind"], listed["source"], listed["messages"]) == (
        "eventbridge-target",
        "ReconcilerFunctionExecutionStatus",
        1,
    )

    assert letters.redrive("ReconcilerTargetDLQ")["replayed"] == 1
    assert status_of(stack, tracker_id) == ("FAILED", "ExecutionTimedOut")
    assert letters.redrive("ReconcilerTargetDLQ")["replayed"] == 0  # deleted once replayed
    [event] = capture.events_for(tracker_id)
    assert assert_schema(event)["reasonCode"] == "EXECUTION_TIMED_OUT"


@contextmanager
def _deny_put_events(stack: LocalStack) -> Iterator[None]:
    """An explicit Deny on the notifier's role: its PutEvents fails (AccessDenied) until removed."""
    iam = stack.client("iam")
    role = stack.role_arn("FailureNotifierFunction").rsplit("/", 1)[-1]
    deny = {"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": "events:PutEvents", "Resource": "*"}]}
    iam.put_role_policy(RoleName=role, PolicyName="TestDenyPutEvents", PolicyDocument=json.dumps(deny))
    try:
        yield
    finally:
        iam.delete_role_policy(RoleName=role, PolicyName="TestDenyPutEvents")


def test_notifier_failures_go_to_its_dlq_and_redrive_from_the_stream(stack: LocalStack, capture: EventCapture) -> None:
    tracker_id = running_row(stack, int(time.time()))
    capture.settle()
    calls_before = stack.invocations().get("FailureNotifierFunction", 0)
    with _deny_put_events(stack), stack.as_function("ReconcilerFunction"):
        reconcile.reconcile_execution({"status": "FAILED", "name": tracker_id, "error": "States.Runtime"})
        assert capture.events_for(tracker_id) == []
        # 1 + MaximumRetryAttempts (10) deliveries, then the OnFailure destination.
        assert stack.invocations()["FailureNotifierFunction"] - calls_before == 11

    letters = dead_letters(stack)
    shown = letters.show("FailureNotifierDLQ")
    assert shown and shown[-1]["attributes"]["EXHAUSTED_RETRY_CONDITION"] == "RetryAttemptsExhausted"
    assert shown[-1]["attributes"]["RETRY_ATTEMPTS"] == "10"
    assert "DDBStreamBatchInfo" in shown[-1]["body"]
    redriven = letters.redrive("FailureNotifierDLQ")
    assert redriven["failed"] == 0, redriven
    [event] = capture.events_for(tracker_id)
    assert assert_schema(event)["reasonCode"] == "EXECUTION_FAILED"
    assert letters.redrive("FailureNotifierDLQ")["replayed"] == 0


def test_notifier_retried_with_the_same_record_announces_once(stack: LocalStack, capture: EventCapture) -> None:
    tracker_id = running_row(stack, int(time.time()), step="STARTED")
    with stack.as_function("ReconcilerFunction"):
        reconcile.reconcile_execution({"status": "TIMED_OUT", "name": tracker_id})
    [first] = capture.events_for(tracker_id)
    record = {
        "eventName": "MODIFY",
        "dynamodb": {
            "Keys": {"trackerId": {"S": tracker_id}},
            "SequenceNumber": "1",
            "OldImage": {"status": {"S": "RUNNING"}, "step": {"S": "STARTED"}},
            "NewImage": {"status": {"S": "FAILED"}},
        },
    }
    # The ESM retrying a batch the function already handled (e.g. it timed out after PutEvents and the write).
    with stack.as_function("FailureNotifierFunction"):
        answer = notifications.notifier({"Records": [record]}, _Context())
    assert answer == {"batchItemFailures": []}
    assert capture.events_for(tracker_id) == [first]


class _Context:
    function_name = "FailureNotifierFunction"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:FailureNotifierFunction"
    memory_limit_in_mb = 512
    aws_request_id = "req-1"

    def get_remaining_time_in_millis(self) -> int:
        return 30000


def test_cli_lists_and_shows_against_the_local_endpoint(stack: LocalStack, capsys: pytest.CaptureFixture[str]) -> None:
    from holdline_local.cli import main

    assert main(["dlq", "--endpoint", stack.endpoint, "--json", "list"]) == 0
    listed = {row["queue"]: row for row in json.loads(capsys.readouterr().out)}
    assert set(listed) == {
        "AsyncInvokeDLQ",
        "FailureNotifierDLQ",
        "ReconcilerTargetDLQ",
        "SweeperTargetDLQ",
        "FollowUpTargetDLQ",
        "FollowUpDeadLetterQueue",
    }
    assert main(["dlq", "--endpoint", stack.endpoint, "list"]) == 0  # for a person: a table
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["QUEUE", "KIND", "SOURCE", "MESSAGES", "IN", "FLIGHT"]
    assert {line.split()[0] for line in table[1:-1]} == set(listed)
    assert table[-1].endswith("waiting") or "holdline dlq show" in table[-1]
    assert main(["dlq", "--endpoint", stack.endpoint, "show", "NotADLQ"]) == 2
    assert main(["dlq", "list"]) == 2  # neither a local endpoint nor a stack: refused, nothing touched
