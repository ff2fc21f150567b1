"""Failures reach a person (issue 13), on the local stack as AWS runs things: the schedule fires the sweeper,
Step Functions puts its status changes on the default bus, EventBridge delivers Connect's rule failures to
their function asynchronously (Lambda's retries, then its OnFailure destination), each function with its own
variables and role.

- The sweeper checks every workflow's rows against their own state machine and never stops at a row it cannot
  sweep; follow-up executions that end badly are reconciled like transfers.
- A Connect rule failure whose handling fails is retried and then kept for a person, never answered as a
  duplicate; only the configured instance's failures are ours.
- A failure that needs a person is never ``retryable``.
- ConfigLookupFunction never logs its event (the caller's number), whatever POWERTOOLS_LOGGER_LOG_EVENT says.
"""

from __future__ import annotations

import copy
import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from holdline.config import get_settings
from holdline.dal import aws
from holdline.logic import reconcile
from holdline_local.dlq import DeadLetters, local_queue_url
from holdline_local.stack import LOCAL_CONNECT_INSTANCE_ARN, LocalStack
from tests.conftest import load_event
from tests.faults import FaultyClients, error
from tests.functional.test_connect_rule_failures import recorded
from tests.functional.test_failure_events import EventCapture, running_row, status_change, status_of
from tests.helpers import wait_for_execution

FOLLOW_UP = "FollowUpStateMachine"


@pytest.fixture(scope="module")
def capture(stack: LocalStack) -> EventCapture:
    return EventCapture(stack)


def execution_arn(stack: LocalStack, machine: str, name: str) -> str:
    return stack.arn(machine).replace(":stateMachine:", ":execution:") + ":" + name


def put_row(stack: LocalStack, operation: str, created_at: int, step: str = "STARTED") -> str:
    """A RUNNING tracker row of a workflow, as its starter writes it."""
    tracker_id = f"{operation}-{uuid.uuid4().hex}"
    stack.client("dynamodb").put_item(
        TableName="TrackerTable",
        Item={
            "trackerId": {"S": tracker_id},
            "operation": {"S": operation},
            "status": {"S": "RUNNING"},
            "step": {"S": step},
            "contactId": {"S": "c-1"},
            "createdAt": {"N": str(created_at)},
            "request": {"M": {"reason": {"S": "CALLBACK_REQUESTED"}, "delaySeconds": {"N": "0"}}},
        },
    )
    return tracker_id


def wait_until_final(stack: LocalStack, tracker_id: str, seconds: float) -> tuple[str, str | None]:
    deadline = time.monotonic() + seconds
    while status_of(stack, tracker_id)[0] == "RUNNING" and time.monotonic() < deadline:
        time.sleep(0.2)
    return status_of(stack, tracker_id)


@contextmanager
def denied(stack: LocalStack, function: str, action: str) -> Iterator[None]:
    """An explicit Deny on a function's role until the block ends (its calls fail with AccessDenied)."""
    iam = stack.client("iam")
    role = stack.role_arn(function).rsplit("/", 1)[-1]
    deny = {"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": action, "Resource": "*"}]}
    iam.put_role_policy(RoleName=role, PolicyName="TestDeny", PolicyDocument=json.dumps(deny))
    try:
        yield
    finally:
        iam.delete_role_policy(RoleName=role, PolicyName="TestDeny")


def status_change_rule(stack: LocalStack) -> str:
    """The rule that delivers Step Functions' status changes to the reconciler (whatever SAM names it)."""
    rules = stack.client("events").list_rules()["Rules"]
    (name,) = [r["Name"] for r in rules if "aws.states" in r.get("EventPattern", "")]
    return str(name)


# ---- the sweeper and the reconciler know every workflow ----------------------------------------------------
def test_the_schedule_sweeps_every_workflows_rows(stack: LocalStack, capture: EventCapture) -> None:
    """No test calls it: the schedule fires the sweeper, which finds a follow-up row and a transfer row whose
    executions never started. The follow-up's is looked up in the follow-up state machine (the sweeper has its
    ARN and may describe its executions); the transfer row after it is swept too."""
    follow_up = put_row(stack, "followUp", 100)  # the oldest rows of the table: swept first
    transfer = put_row(stack, "transfer", 101)
    deadline = 5 * 60 * stack.time_scale * 4 + 15
    assert wait_until_final(stack, follow_up, deadline) == ("FAILED", "ExecutionNotStarted")
    assert wait_until_final(stack, transfer, deadline) == ("FAILED", "ExecutionNotStarted")
    [event] = capture.events_for(follow_up)
    assert (event["detail"]["operation"], event["detail"]["failureSource"]) == ("followUp", "SWEEPER")
    assert event["resources"] == [execution_arn(stack, FOLLOW_UP, follow_up)]


def test_a_row_that_cannot_be_swept_does_not_stop_the_others(
    stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = 1
    assert stack.scheduler is not None
    with stack.scheduler.paused():  # this test is the only sweeper
        stack.settle()  # a run the schedule fired just before has finished
        # The oldest rows of the table (swept first): the fault hits the first one's DescribeExecution.
        first, second = put_row(stack, "transfer", base), put_row(stack, "transfer", base + 1)
        faults = FaultyClients(aws.client).on("stepfunctions", "describe_execution", error("AccessDeniedException"))
        with stack.as_function("SweeperFunction"):
            monkeypatch.setattr(aws, "client", faults)
            settings = get_settings()
            report = reconcile.sweep(settings, now=base + settings.sweep_after_seconds + 10, sleep=lambda _: None)
            monkeypatch.undo()
        assert status_of(stack, first)[0] == "RUNNING"  # the row whose DescribeExecution failed: next run
        assert status_of(stack, second) == ("FAILED", "ExecutionNotStarted")
        assert getattr(report, "failed", None) == 1
        with stack.as_function("SweeperFunction"):
            reconcile.sweep(get_settings(), now=base + get_settings().sweep_after_seconds + 10, sleep=lambda _: None)
        assert status_of(stack, first) == ("FAILED", "ExecutionNotStarted")


def start_waiting_follow_up(stack: LocalStack, connect_event: Any, call: Any) -> str:
    """A follow-up the flow asked for with an hour's delay: its execution waits in its Delay state."""
    from holdline.handlers import starter

    event = connect_event({"operation": "followUp", "reason": "CALLBACK_REQUESTED", "delaySeconds": "3600"})
    answer = call(starter.handler, event)
    assert answer["status"] == "STARTED", answer
    tracker_id = str(answer["trackerId"])
    sfn = stack.client("stepfunctions")
    arn = execution_arn(stack, FOLLOW_UP, tracker_id)
    deadline = time.monotonic() + 20
    while not any(e["type"] == "WaitStateEntered" for e in sfn.get_execution_history(executionArn=arn)["events"]):
        assert time.monotonic() < deadline, "the follow-up never reached its Delay"
        time.sleep(0.1)
    return tracker_id


def test_an_aborted_follow_up_execution_ends_its_tracker(
    stack: LocalStack, capture: EventCapture, connect_event: Any, call: Any
) -> None:
    """Stopped from outside: Step Functions' ABORTED status change reaches the reconciler, as a transfer's does."""
    tracker_id = start_waiting_follow_up(stack, connect_event, call)
    stack.client("stepfunctions").stop_execution(executionArn=execution_arn(stack, FOLLOW_UP, tracker_id))
    assert wait_until_final(stack, tracker_id, 20) == ("FAILED", "ExecutionAborted")
    [event] = capture.events_for(tracker_id)
    assert (event["detail"]["operation"], event["detail"]["failureSource"]) == ("followUp", "RECONCILER")


def test_a_lost_follow_up_status_change_is_swept(
    stack: LocalStack, capture: EventCapture, connect_event: Any, call: Any
) -> None:
    events = stack.client("events")
    rule = status_change_rule(stack)
    tracker_id = start_waiting_follow_up(stack, connect_event, call)
    events.disable_rule(Name=rule)
    try:
        stack.client("stepfunctions").stop_execution(executionArn=execution_arn(stack, FOLLOW_UP, tracker_id))
        time.sleep(0.5)
        assert status_of(stack, tracker_id)[0] == "RUNNING"  # the event was lost: only the sweeper can tell
        with stack.as_function("SweeperFunction"):
            settings = get_settings()
            later = time.time() + settings.sweep_after_seconds + 5
            for _ in range(10):  # other tests' leftovers may be due too (oldest first)
                if status_of(stack, tracker_id)[0] != "RUNNING":
                    break
                reconcile.sweep(settings, now=later, sleep=lambda _: None)
    finally:
        events.enable_rule(Name=rule)
    assert status_of(stack, tracker_id) == ("FAILED", "ExecutionAborted")
    [event] = capture.events_for(tracker_id)
    assert event["detail"]["failureSource"] == "SWEEPER"


# ---- Connect's rule failures: never dropped, only our instance's ----------------------------------------------
def rule_failure_event(instance_arn: str = LOCAL_CONNECT_INSTANCE_ARN) -> dict[str, Any]:
    """A retryable CREATE_TASK failure of a new rule, as Connect puts it on the default bus."""
    event = copy.deepcopy(load_event("connect-rule-create-task-throttled.json"))
    event["detail"].update({"ruleId": str(uuid.uuid4()), "instanceArn": instance_arn})
    event["resources"] = [instance_arn]
    return event


def put_on_the_default_bus(stack: LocalStack, event: dict[str, Any]) -> str:
    """Put an event as its source would; returns the id EventBridge gave it."""
    answer = stack.client("events").put_events(
        Entries=[
            {
                "Source": event["source"],
                "DetailType": event["detail-type"],
                "Detail": json.dumps(event["detail"]),
                "Resources": event["resources"],
            }
        ]
    )
    assert answer["FailedEntryCount"] == 0, answer
    return str(answer["Entries"][0]["EventId"])


def test_a_rule_failure_whose_handling_fails_is_retried_then_kept_for_a_person(stack: LocalStack) -> None:
    """The follow-up cannot be started (the function's role is refused StartExecution): Lambda's retries fail
    too, instead of answering DUPLICATE, and the event lands in the function's OnFailure destination. Once the
    cause is fixed, a redrive does the work."""
    assert stack.connect is not None
    letters = DeadLetters(stack.client, local_queue_url(stack.client("sqs")))
    stack.settle()
    with denied(stack, "ConnectRuleFailureFunction", "states:StartExecution"):
        event_id = put_on_the_default_bus(stack, rule_failure_event())
        stack.settle()
    kept = [m for m in letters.show("AsyncInvokeDLQ") if m["body"].get("requestPayload", {}).get("id") == event_id]
    assert len(kept) == 1, "the failure was dropped"
    assert kept[0]["attributes"]["ERROR_CODE"] in {"ClientError", "AccessDeniedException"}
    assert kept[0]["attributes"]["RETRY_ATTEMPTS"] == "2"  # Lambda's asynchronous retries, all of them failed
    assert letters.redrive("AsyncInvokeDLQ")["failed"] == 0
    [record] = recorded(stack, event_id)
    assert record["status"]["S"] == "HANDLED"
    follow_up_id = record["outcome"]["M"]["followUpTrackerId"]["S"]
    assert wait_for_execution(stack, follow_up_id, machine=FOLLOW_UP)["status"] == "SUCCEEDED"
    assert stack.connect.count(follow_up_id) == 1


def test_only_the_configured_instances_rule_failures_are_handled(stack: LocalStack) -> None:
    other = "arn:aws:connect:us-east-1:123456789012:instance/11111111-2222-4333-8444-555555555555"
    ours = put_on_the_default_bus(stack, rule_failure_event())
    theirs = put_on_the_default_bus(stack, rule_failure_event(other))
    stack.settle()
    assert len(recorded(stack, ours)) == 1
    assert recorded(stack, theirs) == []


# ---- a failure that needs a person is not retryable -------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "step", "reason", "needs_a_person"),
    [
        ("TIMED_OUT", "CREDITING", "EXECUTION_TIMED_OUT", True),
        ("ABORTED", "DEBITING", "EXECUTION_ABORTED", True),
        ("TIMED_OUT", "STARTED", "EXECUTION_TIMED_OUT", False),  # nothing moved yet: trying again is safe
    ],
)
def test_a_failure_that_needs_a_person_is_never_retryable(
    stack: LocalStack, capture: EventCapture, status: str, step: str, reason: str, needs_a_person: bool
) -> None:
    """Step Functions reports the execution ended from outside; the reconciler ends the tracker and the
    notifier announces it. A consumer honouring ``retryable`` must not start a second transfer while the
    first one's money may be with neither party."""
    tracker_id = running_row(stack, int(time.time()), step=step)
    stack.client("events").put_events(Entries=[status_change(tracker_id, status)])
    [event] = capture.events_for(tracker_id)
    detail = event["detail"]
    assert (detail["reasonCode"], detail["additionalInfo"]["manualReviewRequired"]) == (reason, needs_a_person)
    if needs_a_person:
        assert detail["additionalInfo"] == {"retryable": False, "retryDelay": 0, "manualReviewRequired": True}
    else:
        assert detail["additionalInfo"]["retryable"] is True and detail["additionalInfo"]["retryDelay"] > 0


# ---- the caller's number is never logged ------------------------------------------------------------------------
@contextmanager
def variable(stack: LocalStack, function: str, name: str, value: str) -> Iterator[None]:
    """A configuration update of the function (new environments get it), undone afterwards."""
    lam = stack.client("lambda")
    before = lam.get_function_configuration(FunctionName=function)["Environment"]["Variables"]
    lam.update_function_configuration(FunctionName=function, Environment={"Variables": {**before, name: value}})
    try:
        yield
    finally:
        lam.update_function_configuration(FunctionName=function, Environment={"Variables": before})


@pytest.mark.parametrize("function", ["ConfigLookupFunction", "StarterFunction", "StatusFunction", "ResultsFunction"])
def test_connect_facing_functions_never_log_their_event(stack: LocalStack, connect_event: Any, function: str) -> None:
    """An operator turns on Powertools' event logging to debug (POWERTOOLS_LOGGER_LOG_EVENT=true): a
    Connect-facing function still never writes its event, which carries the caller's phone number."""
    phone = f"+4477009{uuid.uuid4().int % 10**5:05d}"
    event = connect_event({"fromAccount": "CHK-00011111", "toAccount": "SAV-00022222", "amount": "1.00"})
    event["Details"]["ContactData"]["CustomerEndpoint"]["Address"] = phone
    assert stack.runtime is not None
    with variable(stack, function, "POWERTOOLS_LOGGER_LOG_EVENT", "true"):
        stack.invoke(function, event)
    assert phone not in stack.runtime.log_text(function)
    assert phone[-4:] in json.dumps(event)  # the test's own check: the number was in the event
