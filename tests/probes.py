"""Small functions deployed through the Lambda and IAM APIs (zip packages, as a user would against
``holdline local up``), for tests of the local runtime and of moto's executor."""

from __future__ import annotations

import io
import json
import textwrap
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from holdline_local.stack import LocalStack

# A handler that does what its event asks: sleep, raise, exit, read variables, call DynamoDB.
PROBE = textwrap.dedent(
    """
    import os, sys, time

    INVOCATIONS = 0

    def handler(event, context):
        global INVOCATIONS
        INVOCATIONS += 1
        if event.get("sleep"):
            time.sleep(event["sleep"])
        if event.get("raise"):
            raise KeyError(event["raise"])
        if event.get("put_item") or event.get("get_item"):
            import boto3
            ddb = boto3.client("dynamodb")
            key = {"trackerId": {"S": "probe-" + context.aws_request_id}}
            if event.get("put_item"):
                ddb.put_item(TableName="TrackerTable", Item=key)
            else:
                ddb.get_item(TableName="TrackerTable", Key=key)
        return {
            "pid": os.getpid(),
            "invocations": INVOCATIONS,
            "environment": dict(os.environ),
            "remainingMs": context.get_remaining_time_in_millis(),
            "path": sys.path,
        }
    """
)

TRUST = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}


def _zip(source: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("probe.py", source)
    return buffer.getvalue()


Deploy = Callable[..., str]


@pytest.fixture
def deploy(stack: LocalStack) -> Iterator[Deploy]:
    """Create a function (and its role) through the Lambda and IAM APIs; delete them afterwards."""
    lam, iam = stack.client("lambda"), stack.client("iam")
    made: list[tuple[str, str]] = []

    def make(
        *, timeout: int = 3, variables: dict[str, str] | None = None, actions: tuple[str, ...] = (), resource: str = "*"
    ) -> str:
        name = f"Probe{uuid.uuid4().hex[:10]}"
        role = iam.create_role(RoleName=f"{name}Role", AssumeRolePolicyDocument=json.dumps(TRUST))["Role"]["Arn"]
        if actions:
            statement = {"Effect": "Allow", "Action": list(actions), "Resource": resource}
            iam.put_role_policy(
                RoleName=f"{name}Role",
                PolicyName="probe",
                PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [statement]}),
            )
        lam.create_function(
            FunctionName=name,
            Runtime="python3.11",
            Role=role,
            Handler="probe.handler",
            Code={"ZipFile": _zip(PROBE)},
            Timeout=timeout,
            MemorySize=256,
            Environment={"Variables": variables or {}},
        )
        made.append((name, f"{name}Role"))
        return name

    yield make
    for name, _ in made:
        lam.delete_function(FunctionName=name)
        assert stack.runtime is not None
        stack.runtime.discard_environments(name)


def invoke(stack: LocalStack, name: str, event: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    answer = stack.client("lambda").invoke(FunctionName=name, Payload=json.dumps(event).encode())
    return json.loads(answer["Payload"].read() or b"null"), answer.get("FunctionError")


def function_arn(name: str) -> str:
    return f"arn:aws:lambda:us-east-1:123456789012:function:{name}"


def one_task(function: str, payload: dict[str, Any], **task: Any) -> dict[str, Any]:
    """A state machine of one ``lambda:invoke`` Task (``task`` adds TimeoutSeconds, Retry, ...)."""
    state = {
        "Type": "Task",
        "Resource": "arn:aws:states:::lambda:invoke",
        "Parameters": {"FunctionName": function, "Payload": payload},
        "End": True,
        **task,
    }
    return {"StartAt": "Call", "States": {"Call": state}}


def invoke_role(stack: LocalStack, function: str) -> str:
    """A state machine role that may invoke ``function`` (and nothing else)."""
    iam = stack.client("iam")
    name = f"Sfn{uuid.uuid4().hex[:10]}"
    role = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(TRUST))["Role"]["Arn"]
    statement = {"Effect": "Allow", "Action": "lambda:InvokeFunction", "Resource": function_arn(function)}
    iam.put_role_policy(
        RoleName=name,
        PolicyName="invoke",
        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [statement]}),
    )
    return str(role)


def run_state_machine(
    stack: LocalStack, definition: dict[str, Any], role_arn: str, timeout: float = 30, execution_input: Any = None
) -> dict[str, Any]:
    sfn = stack.client("stepfunctions")
    machine = sfn.create_state_machine(
        name=f"Probe{uuid.uuid4().hex[:10]}", definition=json.dumps(definition), roleArn=role_arn
    )["stateMachineArn"]
    started = {} if execution_input is None else {"input": json.dumps(execution_input)}
    arn = sfn.start_execution(stateMachineArn=machine, name=uuid.uuid4().hex, **started)["executionArn"]
    deadline = time.monotonic() + timeout
    while (described := sfn.describe_execution(executionArn=arn))["status"] == "RUNNING":
        assert time.monotonic() < deadline, "execution still running"
        time.sleep(0.05)
    return dict(described)
