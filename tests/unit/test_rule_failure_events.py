"""Connect's rule-action failure events, parsed the way Connect documents them (and the way it sends them)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from holdline.errors import RequestRejected
from holdline.models.follow_up import FollowUpRequest
from holdline.models.rule_failure import MAX_RETRY_DELAY_SECONDS, parse_rule_failure
from tests.conftest import load_event


def test_documented_sample_parses() -> None:
    failure = parse_rule_failure(load_event("connect-rule-action-failed.json")["detail"])
    assert failure.action_type == "CREATE_TASK" and failure.reason_code == "ResourceNotFoundException"
    assert failure.retryable is False and failure.retry_delay_seconds == 0
    assert failure.instance_arn.endswith("instance/cb54730f-5aac-4376-b2f4-7c822889931e")


@pytest.mark.parametrize(
    ("event", "retryable", "delay"),
    [
        ("connect-rule-create-task-quota.json", True, 30),  # additionalInfo as a JSON string
        ("connect-rule-create-task-throttled.json", True, 5),  # additionalInfo as an object
        ("connect-rule-eventbridge-event.json", True, 60),
        ("connect-rule-send-notification.json", False, 0),
    ],
)
def test_additional_info_in_either_shape(event: str, retryable: bool, delay: int) -> None:
    failure = parse_rule_failure(load_event(event)["detail"])
    assert (failure.retryable, failure.retry_delay_seconds) == (retryable, delay)


def test_delay_is_capped_and_garbage_is_ignored() -> None:
    detail = load_event("connect-rule-action-failed.json")["detail"]
    assert parse_rule_failure(
        {**detail, "additionalInfo": {"retryable": "true", "retryDelay": 10**9}}
    ).retry_delay_seconds == (MAX_RETRY_DELAY_SECONDS)
    odd = parse_rule_failure({**detail, "additionalInfo": "not json"})
    assert (odd.retryable, odd.retry_delay_seconds) == (False, 0)


def test_missing_rule_id_or_detail_is_refused() -> None:
    with pytest.raises(RequestRejected):
        parse_rule_failure(None)
    with pytest.raises(ValidationError):
        parse_rule_failure({"actionType": "CREATE_TASK"})


def test_follow_up_request_validates_its_reason() -> None:
    assert FollowUpRequest.model_validate({}).reason == "CALLBACK_REQUESTED"
    with pytest.raises(ValidationError) as info:
        FollowUpRequest.model_validate({"reason": "FREE_MONEY"})
    assert info.value.errors()[0]["type"] == "INVALID_PARAMETER"
    with pytest.raises(ValidationError):
        FollowUpRequest.model_validate({"relatedTrackerId": "bad id!"})
    with pytest.raises(ValidationError):
        FollowUpRequest.model_validate({"delaySeconds": 7200})
    a = FollowUpRequest.model_validate({"reason": "REFUND_PENDING", "relatedTrackerId": "transfer-1"})
    assert (
        a.fingerprint()
        == FollowUpRequest.model_validate(a.to_item() | {"relatedTrackerId": "transfer-1"}).fingerprint()
    )
