"""The failure event's content, the reason codes, and the DLQ tooling's pure parts."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from holdline.config import Settings
from holdline.errors import ERRORS_BY_NAME, failure_reason
from holdline.logic.failure_events import failure_detail
from holdline.logic.reconcile import UnknownStateMachine, execution_of, step_before_failure, tracker_id_of
from holdline_local.dlq import DeadLetterQueue, DeadLetters, normalized_attributes
from holdline_local.stream_pump import StreamMapping
from tests.conftest import REPO


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        ("InsufficientFunds", ("INSUFFICIENT_FUNDS", False)),
        ("AccountFrozen", ("ACCOUNT_FROZEN", False)),
        ("BankUnavailable", ("BANK_UNAVAILABLE", True)),
        ("BankTimeout", ("BANK_UNAVAILABLE", True)),
        ("RefundPending", ("REFUND_PENDING", False)),
        ("States.Timeout", ("BANK_UNAVAILABLE", True)),
        ("States.TaskFailed", ("TECHNICAL_ERROR", False)),
        ("ExecutionTimedOut", ("EXECUTION_TIMED_OUT", True)),
        ("ExecutionAborted", ("EXECUTION_ABORTED", True)),
        ("ExecutionFailed", ("EXECUTION_FAILED", False)),
        ("ExecutionNotStarted", ("EXECUTION_NOT_STARTED", True)),
        (None, ("TECHNICAL_ERROR", False)),
        ("SomethingNew", ("TECHNICAL_ERROR", False)),
    ],
)
def test_failure_reason(error: str | None, expected: tuple[str, bool]) -> None:
    assert failure_reason(error) == expected


def test_every_domain_error_has_a_reason() -> None:
    for name, cls in ERRORS_BY_NAME.items():
        assert failure_reason(name) == (cls.code, cls.transient)


def test_detail_matches_the_documented_sample_and_masks() -> None:
    sample = json.loads((REPO / "events" / "failure-event.json").read_text())["detail"]
    row = {
        "trackerId": sample["trackerId"],
        "operation": "transfer",
        "contactId": sample["contactId"],
        "instanceArn": sample["instanceArn"],
        "executionName": sample["executionName"],
        "status": "FAILED",
        "step": "DONE",
        "failureError": "RefundPending",
        "refunded": False,
        "updatedAt": sample["failedAt"],
        "request": {"fromAccount": "CHK-00012345", "toAccount": "SAV-00067890", "amount": "250.00", "currency": "USD"},
    }
    assert failure_detail(row, previous_step="REFUNDING") == sample
    assert "00012345" not in json.dumps(failure_detail(row))


def test_reconciler_reads_the_tracker_from_input_or_name() -> None:
    assert tracker_id_of({"input": json.dumps({"trackerId": "t-1"}), "name": "other"}) == "t-1"
    assert tracker_id_of({"input": "not json", "name": "t-2"}) == "t-2"
    assert tracker_id_of({"input": None}) is None


def test_stream_mapping_honours_the_template_filter() -> None:
    from holdline_local.template import load_template

    props = load_template()["Resources"]["FailureNotifierStream"]["Properties"]
    mapping = StreamMapping.from_properties("M", {**props, "EventSourceArn": "s", "FunctionName": "f"})

    def record(old: str, new: str, name: str = "MODIFY") -> dict[str, Any]:
        return {"eventName": name, "dynamodb": {"OldImage": {"status": {"S": old}}, "NewImage": {"status": {"S": new}}}}

    assert mapping.matches(record("RUNNING", "FAILED"))
    assert not mapping.matches(record("FAILED", "FAILED"))  # the notifier's own failureNotifiedAt write
    assert not mapping.matches(record("RUNNING", "SUCCEEDED"))
    assert not mapping.matches(record("RUNNING", "RUNNING"))
    assert (mapping.max_retries, mapping.report_item_failures) == (10, True)


def test_lambda_records_are_read_with_eventbridge_names() -> None:
    body = {
        "requestContext": {"functionArn": "arn:f", "condition": "RetriesExhausted", "approximateInvokeCount": 3},
        "responseContext": {"functionError": "Unhandled"},
        "responsePayload": {"errorType": "ClientError", "errorMessage": "boom"},
    }
    assert normalized_attributes(body, {}) == {
        "TARGET_ARN": "arn:f",
        "ERROR_CODE": "ClientError",
        "ERROR_MESSAGE": "boom",
        "EXHAUSTED_RETRY_CONDITION": "RetriesExhausted",
        "RETRY_ATTEMPTS": "2",
    }


def test_a_dlq_fed_by_an_sqs_queue_is_redriven_by_a_message_move_task() -> None:
    # moto has no StartMessageMoveTask: check the call we make against botocore's model instead.
    sqs = boto3.client("sqs", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    url = "https://sqs.us-east-1.amazonaws.com/123456789012/WorkDLQ"
    arn = "arn:aws:sqs:us-east-1:123456789012:WorkDLQ"
    with Stubber(sqs) as stub:
        stub.add_response(
            "get_queue_attributes", {"Attributes": {"QueueArn": arn}}, {"QueueUrl": url, "AttributeNames": ["QueueArn"]}
        )
        stub.add_response("start_message_move_task", {"TaskHandle": "handle-1"}, {"SourceArn": arn})
        letters = DeadLetters(lambda _: sqs, lambda _: url, [DeadLetterQueue("WorkDLQ", "sqs-source", "WorkQueue")])
        assert letters.redrive("WorkDLQ") == {"queue": "WorkDLQ", "moveTask": "handle-1", "replayed": 0, "failed": 0}
        stub.assert_no_pending_responses()


def test_an_unknown_queue_is_refused() -> None:
    letters = DeadLetters(lambda _: None, lambda _: "", [])
    with pytest.raises(KeyError):
        letters.show("NoSuchDLQ")


@pytest.mark.parametrize(
    ("error", "source", "step", "expected"),
    [
        # Ended from outside after money may have moved: a person checks it, and nobody retries it meanwhile.
        ("ExecutionTimedOut", "RECONCILER", "CREDITING", {"retryable": False, "retryDelay": 0, "review": True}),
        ("ExecutionAborted", "SWEEPER", "DEBITING", {"retryable": False, "retryDelay": 0, "review": True}),
        ("RefundPending", "SAGA", "REFUNDING", {"retryable": False, "retryDelay": 0, "review": True}),
        # Before any money moved, or a transient bank failure the saga settled: trying again is safe.
        ("ExecutionTimedOut", "RECONCILER", "STARTED", {"retryable": True, "retryDelay": 60, "review": False}),
        ("ExecutionNotStarted", "SWEEPER", "STARTED", {"retryable": True, "retryDelay": 60, "review": False}),
        ("BankUnavailable", "SAGA", "REFUNDING", {"retryable": True, "retryDelay": 60, "review": False}),
    ],
)
def test_a_failure_that_needs_a_person_is_not_retryable(
    error: str, source: str, step: str, expected: dict[str, Any]
) -> None:
    row = {"trackerId": "transfer-1", "failureError": error, "failureSource": source, "step": "DONE"}
    info = failure_detail(row, previous_step=step)["additionalInfo"]
    assert info == {
        "retryable": expected["retryable"],
        "retryDelay": expected["retryDelay"],
        "manualReviewRequired": expected["review"],
    }


def test_the_sweeper_looks_a_row_up_in_its_own_workflows_state_machine() -> None:
    machines = "arn:aws:states:us-east-1:123456789012:stateMachine:"
    both = Settings(transfer_state_machine_arn=machines + "T", follow_up_state_machine_arn=machines + "F")
    assert execution_of({"trackerId": "followUp-1", "operation": "followUp"}, both).endswith(":execution:F:followUp-1")
    assert execution_of({"trackerId": "transfer-1"}, both).endswith(":execution:T:transfer-1")  # older rows
    with pytest.raises(UnknownStateMachine):  # a function without the variable: refused, never ":followUp-1"
        execution_of({"trackerId": "followUp-1", "operation": "followUp"}, Settings(transfer_state_machine_arn="x"))
    with pytest.raises(UnknownStateMachine):
        execution_of({"trackerId": "x-1", "operation": "mystery"}, both)


@pytest.mark.parametrize(
    ("operation", "source", "error", "step", "manual_review"),
    [
        # Ended from outside after its stream record (and the step before DONE) was lost: maybe after the debit.
        ("transfer", "RECONCILER", "ExecutionAborted", "DEBITING", True),
        ("transfer", "SWEEPER", "ExecutionTimedOut", "DEBITING", True),
        # Never started: no money moved, and a new attempt is safe.
        ("transfer", "SWEEPER", "ExecutionNotStarted", "STARTED", False),
        # The saga's own failures are described by their error (REFUND_PENDING needs a person at any step).
        ("transfer", "SAGA", "InsufficientFunds", "DONE", False),
        ("transfer", "SAGA", "RefundPending", "DONE", True),
        # A workflow that moves no money reports its row's own step.
        ("followUp", "RECONCILER", "ExecutionAborted", "DONE", False),
    ],
)
def test_a_lost_announcement_assumes_the_worst_step(
    operation: str, source: str, error: str, step: str, manual_review: bool
) -> None:
    row = {"trackerId": "t-1", "operation": operation, "status": "FAILED", "step": "DONE"}
    row |= {"failureSource": source, "failureError": error}
    assert step_before_failure(row) == step
    detail = failure_detail(row, previous_step=step_before_failure(row))
    assert detail["additionalInfo"]["manualReviewRequired"] is manual_review
    assert not (manual_review and detail["additionalInfo"]["retryable"])
