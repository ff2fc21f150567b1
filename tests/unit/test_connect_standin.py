"""The Connect stand-in speaks Connect's wire format: the real boto3 client sees Connect's error codes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from holdline_local.connect_standin import ERROR_STATUS, ConnectStandIn

INSTANCE = "11111111-2222-3333-4444-555555555555"
FLOW = "flow-1"


@pytest.fixture
def standin() -> Iterator[ConnectStandIn]:
    connect = ConnectStandIn(instance_ids={INSTANCE}, contact_flow_ids={FLOW}, seed=7)
    connect.start()
    yield connect
    connect.stop()


@pytest.fixture
def client(standin: ConnectStandIn) -> Any:
    return boto3.client(
        "connect",
        endpoint_url=standin.url,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
        config=boto3.session.Config(retries={"total_max_attempts": 1}),
    )


def task(**changes: Any) -> dict[str, Any]:
    return {"InstanceId": INSTANCE, "ContactFlowId": FLOW, "Name": "Call back", "ClientToken": "t-1", **changes}


def test_creates_a_task_once_per_client_token(standin: ConnectStandIn, client: Any) -> None:
    first = client.start_task_contact(**task())["ContactId"]
    again = client.start_task_contact(**task())["ContactId"]
    assert first == again
    assert standin.count("t-1") == 1
    assert client.start_task_contact(**task(ClientToken="t-2"))["ContactId"] != first


def test_token_reused_with_another_request_is_refused(standin: ConnectStandIn, client: Any) -> None:
    client.start_task_contact(**task())
    with pytest.raises(ClientError) as info:
        client.start_task_contact(**task(Name="Something else"))
    assert info.value.response["Error"]["Code"] == "IdempotencyException"
    assert standin.count("t-1") == 1


@pytest.mark.parametrize("code", sorted(ERROR_STATUS))
def test_injected_errors_reach_boto3_with_their_code(standin: ConnectStandIn, client: Any, code: str) -> None:
    standin.fail_next(code)
    with pytest.raises(ClientError) as info:
        client.start_task_contact(**task())
    assert info.value.response["Error"]["Code"] == code
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == ERROR_STATUS[code]
    assert standin.tasks == []
    assert client.start_task_contact(**task())["ContactId"]  # the fault was used up


def test_wrong_flow_and_instance_are_not_found(client: Any) -> None:
    for changes in ({"ContactFlowId": "nope"}, {"InstanceId": "nope"}):
        with pytest.raises(ClientError) as info:
            client.start_task_contact(**task(**changes))
        assert info.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_fault_rate_is_seeded_and_bounded(standin: ConnectStandIn, client: Any) -> None:
    standin.fail_at_rate("ThrottlingException", 0.5)
    outcomes = []
    for n in range(40):
        try:
            client.start_task_contact(**task(ClientToken=f"r-{n}"))
            outcomes.append("ok")
        except ClientError as exc:
            outcomes.append(exc.response["Error"]["Code"])
    assert 5 < outcomes.count("ThrottlingException") < 35
    assert outcomes.count("ok") == len(standin.tasks)
    with pytest.raises(ValueError):
        standin.fail_at_rate("ThrottlingException", 2)
