"""Step Functions executions: starting them, and (for the sweeper only) asking how one ended. Never
DescribeExecution from the Connect path: its quota is 15/s refill per account and Region; the tracker row
answers the flow instead."""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from holdline.dal import aws


def start(state_machine_arn: str, name: str, payload: dict[str, str]) -> str:
    """Start (or find already started) the execution called ``name``; return its ARN.

    Standard workflows make this idempotent: the same name and input while the execution is open returns the
    original answer. ``ExecutionAlreadyExists`` means it ran and closed already, which is also a success here
    because the name is derived from the tracker id and the input from nothing else.
    """
    try:
        answer = aws.call(
            "stepfunctions",
            "start_execution",
            stateMachineArn=state_machine_arn,
            name=name,
            input=json.dumps(payload, sort_keys=True, separators=(",", ":")),
        )
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ExecutionAlreadyExists":
            return execution_arn(state_machine_arn, name)
        raise
    return str(answer["executionArn"])


def start_for_tracker(state_machine_arn: str, tracker_id: str, operation: str) -> str:
    """Start the execution of a tracker row: named after the tracker, with the one input every starter of it
    gives (the starter, and status or the waiter for a row whose execution never started). One definition, so
    each of them sends the same name and the same input, which is what makes a second start a no-op."""
    return start(state_machine_arn, tracker_id, {"trackerId": tracker_id, "operation": operation})


def execution_arn(state_machine_arn: str, name: str) -> str:
    return state_machine_arn.replace(":stateMachine:", ":execution:") + ":" + name


def describe(execution_arn: str) -> dict[str, Any] | None:
    """DescribeExecution (quota: 15/s refill per account and Region; callers pace themselves); None if the
    execution does not exist."""
    try:
        answer: dict[str, Any] = aws.call("stepfunctions", "describe_execution", executionArn=execution_arn)
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ExecutionDoesNotExist":
            return None
        raise
    return answer
