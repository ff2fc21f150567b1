"""Small helpers shared by tests that drive the local stack."""

from __future__ import annotations

import json
import time
from typing import Any

from holdline_local.stack import LocalStack

#: The functions that move or check money: each reserves concurrency and has a Throttles alarm (issue 19, item 6).
MONEY_LEGS = (
    "DebitFunction",
    "CreditFunction",
    "SettlementFunction",
    "ConfirmFunction",
    "RefundFunction",
    "LedgerCheckFunction",
)


def tracker_row(stack: LocalStack, tracker_id: str) -> dict[str, Any] | None:
    item = stack.client("dynamodb").get_item(
        TableName="TrackerTable", Key={"trackerId": {"S": tracker_id}}, ConsistentRead=True
    )
    return item.get("Item")


def executions(stack: LocalStack, name_prefix: str = "") -> list[dict[str, Any]]:
    listed = stack.client("stepfunctions").list_executions(stateMachineArn=stack.arn("TransferStateMachine"))
    return [e for e in listed["executions"] if e["name"].startswith(name_prefix)]


def wait_for_execution(
    stack: LocalStack, tracker_id: str, timeout: float = 60, machine: str = "TransferStateMachine"
) -> dict[str, Any]:
    """Wait until the execution named after the tracker has ended; return DescribeExecution's answer."""
    sfn = stack.client("stepfunctions")
    arn = stack.arn(machine).replace(":stateMachine:", ":execution:") + ":" + tracker_id
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        described: dict[str, Any] = sfn.describe_execution(executionArn=arn)
        if described["status"] != "RUNNING":
            return described
        time.sleep(0.05)
    raise AssertionError(f"execution {tracker_id} still running after {timeout}s")


def history(stack: LocalStack, tracker_id: str, machine: str = "TransferStateMachine") -> list[dict[str, Any]]:
    arn = stack.arn(machine).replace(":stateMachine:", ":execution:") + ":" + tracker_id
    events: list[dict[str, Any]] = stack.client("stepfunctions").get_execution_history(executionArn=arn)["events"]
    return events


def history_text(stack: LocalStack, tracker_id: str) -> str:
    return json.dumps(history(stack, tracker_id), default=str)
