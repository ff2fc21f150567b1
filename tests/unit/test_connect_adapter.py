"""The Connect adapter: events in, flat string maps out, never an exception."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError, ConnectTimeoutError, NoCredentialsError, ReadTimeoutError

from holdline.connect import (
    MAX_ANSWER_BYTES,
    ContactFlowEvent,
    InvalidEvent,
    connect_handler,
    flat_answer,
    parse_event,
)
from holdline.errors import RequestRejected


def test_parse_reads_contact_parameters_and_attributes(connect_event: Any) -> None:
    event = connect_event({"trackerId": "p"}, attributes={"trackerId": "a", "other": "x"}, contact_id="c-1")
    parsed = parse_event(event)
    assert parsed.contact_id == "c-1"
    assert parsed.value("trackerId") == "p"  # a parameter wins over the attribute
    assert parsed.value("other") == "x"
    assert parsed.instance_arn.startswith("arn:aws:connect:")


@pytest.mark.parametrize(
    "event",
    [
        None,
        [],
        "x",
        {},
        {"Details": None},
        {"Details": {}},
        {"Details": {"ContactData": {}}},
        {"Details": {"ContactData": {"ContactId": ""}}},
        {"Details": {"ContactData": {"ContactId": "c"}, "Parameters": []}},
    ],
)
def test_parse_refuses_what_is_not_a_contact_flow_event(event: Any) -> None:
    with pytest.raises(InvalidEvent):
        parse_event(event)


def test_flat_answer_is_strings_only() -> None:
    answer = flat_answer({"a": True, "b": False, "c": 3, "d": None, "e": "x"})
    assert answer == {"a": "true", "b": "false", "c": "3", "e": "x"}


def test_flat_answer_never_exceeds_connect_limit() -> None:
    answer = flat_answer({"big": "x" * MAX_ANSWER_BYTES})
    assert answer["status"] == "ERROR" and answer["errorCode"] == "ANSWER_TOO_LARGE"
    assert len(json.dumps(answer)) < MAX_ANSWER_BYTES


def _wrapped(exc: Exception) -> Any:
    @connect_handler
    def body(event: ContactFlowEvent, context: Any) -> dict[str, object]:
        raise exc

    return body


@pytest.mark.parametrize(
    ("exc", "status", "code", "retryable"),
    [
        (RequestRejected("SAME_ACCOUNT", "no"), "REJECTED", "SAME_ACCOUNT", "false"),
        (ClientError({"Error": {"Code": "ThrottlingException"}}, "StartExecution"), "ERROR", "THROTTLED", "true"),
        (ClientError({"Error": {"Code": "AccessDeniedException"}}, "PutItem"), "ERROR", "DEPENDENCY_ERROR", "true"),
        (ReadTimeoutError(endpoint_url="http://x"), "ERROR", "DEPENDENCY_TIMEOUT", "true"),
        (ConnectTimeoutError(endpoint_url="http://x"), "ERROR", "DEPENDENCY_TIMEOUT", "true"),
        (NoCredentialsError(), "ERROR", "DEPENDENCY_ERROR", "true"),
        (ClientError({"Error": {"Code": "InternalServerError"}}, "GetItem"), "ERROR", "DEPENDENCY_ERROR", "true"),
        (KeyError("boom"), "ERROR", "INTERNAL_ERROR", "true"),
    ],
)
def test_handler_never_raises(
    exc: Exception, status: str, code: str, retryable: str, connect_event: Any, lambda_context: Any
) -> None:
    answer = _wrapped(exc)(connect_event({}), lambda_context)
    assert answer["status"] == status and answer["errorCode"] == code and answer["retryable"] == retryable
    assert all(isinstance(v, str) for v in answer.values())


def test_handler_answers_invalid_event(lambda_context: Any) -> None:
    answer = _wrapped(KeyError())({"Name": "ContactFlowEvent"}, lambda_context)
    assert answer == {
        "status": "REJECTED",
        "errorCode": "INVALID_EVENT",
        "errorMessage": "We could not read that request.",
        "retryable": "false",
    }


def test_parameters_are_a_flat_map_of_short_strings(connect_event: Any) -> None:
    parsed = parse_event(connect_event({"amount": "1.00", "currency": None}))
    assert parsed.parameters == {"amount": "1.00"}  # null is an unset value, not the string "None"
    for bad in ({"amount": 1}, {"amount": {"value": "1"}}, {"amount": ["1"]}, {"note": "x" * 1025}):
        with pytest.raises(InvalidEvent) as info:
            parse_event(connect_event(bad))
        assert info.value.code == "INVALID_PARAMETER"


def test_the_handler_body_runs_inside_the_budget(connect_event: Any, lambda_context: Any) -> None:
    from holdline.connect import ANSWER_RESERVE_SECONDS
    from holdline.dal import aws

    seen: list[float] = []

    @connect_handler
    def body(event: ContactFlowEvent, context: Any) -> dict[str, object]:
        seen.append(aws.remaining_seconds())
        return {"status": "OK"}

    assert body(connect_event({}), lambda_context) == {"status": "OK"}
    expected = lambda_context.get_remaining_time_in_millis() / 1000 - ANSWER_RESERVE_SECONDS
    assert expected - 0.1 < seen[0] <= expected
    assert aws.remaining_seconds() == aws.DEFAULT_BUDGET_SECONDS  # the budget ends with the invocation
