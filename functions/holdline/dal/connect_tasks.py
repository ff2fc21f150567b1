"""Amazon Connect's StartTaskContact, with its errors turned into typed ones for the state machine.

The client token makes creation idempotent: Connect returns the first task's ContactId for a retried call
with the same token (and refuses the token with other parameters), so a retried step never creates two.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from holdline.errors import (
    ConnectAccessDenied,
    ConnectNotReady,
    ConnectRequestInvalid,
    ConnectResourceNotFound,
    ConnectTaskQuotaExceeded,
    ConnectThrottled,
    ConnectUnavailable,
    TaskNotCreated,
)

# One attempt per call: the state machine owns the retries (backoff, full jitter, a cap, visible in the
# execution history); botocore retrying throttling inside the Lambda would hide them and double the wait.
_CONFIG = Config(connect_timeout=2, read_timeout=10, retries={"total_max_attempts": 1})


@cache
def _client() -> Any:
    return boto3.client("connect", config=_CONFIG)


_BY_CODE: dict[str, type[TaskNotCreated]] = {
    "ThrottlingException": ConnectThrottled,
    "TooManyRequestsException": ConnectThrottled,
    "ServiceQuotaExceededException": ConnectTaskQuotaExceeded,
    "LimitExceededException": ConnectTaskQuotaExceeded,
    "ResourceNotReadyException": ConnectNotReady,
    "InternalServiceException": ConnectUnavailable,
    "ResourceNotFoundException": ConnectResourceNotFound,
    "AccessDeniedException": ConnectAccessDenied,
    "InvalidRequestException": ConnectRequestInvalid,
    "InvalidParameterException": ConnectRequestInvalid,
    "IdempotencyException": ConnectRequestInvalid,
}


def start_task(
    *,
    instance_id: str,
    contact_flow_id: str,
    name: str,
    description: str,
    references: Mapping[str, str],
    client_token: str,
    previous_contact_id: str | None = None,
    attributes: Mapping[str, str] | None = None,
) -> str:
    """Create the task (or find the one this token created); return its ContactId."""
    request = {
        "InstanceId": instance_id,
        "ContactFlowId": contact_flow_id,
        "Name": name[:512],
        "Description": description[:4096],
        "References": {key: {"Value": value, "Type": "STRING"} for key, value in references.items()},
        "ClientToken": client_token[:500],
        "Attributes": dict(attributes or {}),
    }
    if previous_contact_id:
        request["PreviousContactId"] = previous_contact_id
    try:
        answer = _client().start_task_contact(**request)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        raise _BY_CODE.get(code, ConnectUnavailable)(f"StartTaskContact failed: {code}") from None
    except BotoCoreError as exc:
        raise ConnectUnavailable(f"StartTaskContact got no answer: {type(exc).__name__}") from None
    return str(answer["ContactId"])
