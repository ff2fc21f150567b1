"""Drive one transfer through the real ASL on the local stack and check the money: helpers for the path tests
and the fault matrix."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from holdline_local.sandbox_bank import SandboxBank
from holdline_local.stack import LocalStack
from tests.conftest import load_event
from tests.helpers import history, tracker_row, wait_for_execution

FINAL = {"SUCCEEDED", "FAILED"}


def new_account(
    bank: SandboxBank, balance: str = "1000.00", prefix: str = "CHK", daily_limit: str | None = None
) -> str:
    """A fresh account per transfer, so per-account faults hit only this transfer (tests run concurrently)."""
    account = f"{prefix}-{uuid.uuid4().hex[:12].upper()}"
    bank.open_account(account, Decimal(balance), daily_limit=Decimal(daily_limit) if daily_limit else None)
    return account


def event(parameters: dict[str, str]) -> dict[str, Any]:
    call = load_event("starter.json")
    contact = call["Details"]["ContactData"]
    contact["ContactId"] = contact["InitialContactId"] = str(uuid.uuid4())
    call["Details"]["Parameters"] = parameters
    return call


@dataclass
class Transfer:
    tracker_id: str
    execution: dict[str, Any]
    outcome: dict[str, Any]
    row: dict[str, Any]
    history: list[dict[str, Any]] = field(repr=False)

    @property
    def status(self) -> str:
        return str(self.row["status"]["S"])

    def entered(self) -> list[str]:
        return [e["stateEnteredEventDetails"]["name"] for e in self.history if "stateEnteredEventDetails" in e]

    def task_errors(self) -> list[str]:
        """Why each failed task attempt failed, in order (a task's own timeout or the function's error)."""
        errors = []
        for event in self.history:
            if event["type"] == "TaskFailed":
                errors.append(str(event["taskFailedEventDetails"]["error"]))
            elif event["type"] == "TaskTimedOut":
                errors.append(str(event["taskTimedOutEventDetails"]["error"]))
        return errors

    def attempts(self, function: str) -> int:
        """How many times the saga invoked a Lambda (each retry is one more)."""
        return sum(
            1
            for e in self.history
            if e["type"] == "TaskScheduled" and f':function:{function}"' in e["taskScheduledEventDetails"]["parameters"]
        )


def warm(stack: LocalStack, function: str) -> None:
    """One invocation that fails at once (no such tracker): the function has a warm environment, so the next
    attempt's Init does not count against its task's TimeoutSeconds (it would on AWS too)."""
    stack.client("lambda").invoke(FunctionName=function, Payload=b'{"trackerId": "transfer-warm-up"}')


def start(stack: LocalStack, source: str, destination: str, amount: str = "10.00") -> str:
    params = {"fromAccount": source, "toAccount": destination, "amount": amount, "currency": "USD"}
    answer = stack.invoke("StarterFunction", event(params))
    assert answer["status"] == "STARTED", answer
    return str(answer["trackerId"])


def finish(stack: LocalStack, tracker_id: str, timeout: float = 90) -> Transfer:
    execution = wait_for_execution(stack, tracker_id, timeout=timeout)
    outcome = stack.invoke("ResultsFunction", event({"trackerId": tracker_id}))
    row = tracker_row(stack, tracker_id)
    assert row is not None
    return Transfer(tracker_id, execution, outcome, row, history(stack, tracker_id))


def run(stack: LocalStack, source: str, destination: str, amount: str = "10.00") -> Transfer:
    return finish(stack, start(stack, source, destination, amount))


def money(bank: SandboxBank, tracker_id: str) -> tuple[int, int, int]:
    return bank.count(tracker_id, "debit"), bank.count(tracker_id, "credit"), bank.count(tracker_id, "refund")


def assert_invariants(
    bank: SandboxBank, transfer: Transfer, source: str, destination: str, amount: str, opening: dict[str, Decimal]
) -> None:
    """What must hold after any fault: money moved at most once per leg, a failure gives the debit back or says
    REFUND_PENDING, the tracker is final once the execution ended, and no money was created or lost."""
    debits, credits, refunds = money(bank, transfer.tracker_id)
    assert debits <= 1 and credits <= 1 and refunds <= 1, (debits, credits, refunds)
    assert transfer.execution["status"] != "RUNNING"
    assert transfer.status in FINAL, f"tracker left {transfer.status} after the execution ended"
    value = Decimal(amount)
    delta_source = bank.balance(source) - opening[source]
    delta_destination = bank.balance(destination) - opening[destination]
    assert delta_source + delta_destination == 0 or (
        transfer.outcome.get("errorCode") == "REFUND_PENDING" and delta_source == -value and delta_destination == 0
    ), (delta_source, delta_destination, transfer.outcome)
    if transfer.status == "SUCCEEDED":
        assert (debits, credits, refunds) == (1, 1, 0)
        assert (delta_source, delta_destination) == (-value, value)
    else:
        assert credits == 0 or transfer.outcome["errorCode"] == "REFUND_PENDING"
        if debits == 1:
            assert refunds == 1 or transfer.outcome["errorCode"] == "REFUND_PENDING", transfer.outcome
            assert transfer.outcome["refunded"] == ("true" if refunds else "false")
        assert debits - refunds == 0 or transfer.outcome["errorCode"] == "REFUND_PENDING"
