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
    bank: SandboxBank,
    transfer: Transfer,
    source: str,
    destination: str,
    amount: str,
    opening: dict[str, Decimal],
    *,
    refund_refused: bool = False,
    ledger_unreadable: bool = False,
) -> None:
    """What must hold after any fault, read from the bank's ledger once every request a timed-out leg left
    behind has landed or not (``bank.wait_idle``): each leg moved money at most once, the tracker is final once
    the execution ended, and the outcome is what the ledger says, i.e. one of

    - SUCCEEDED, with one debit and one credit and nothing else (a credit that landed is always this, however
      its answers were lost);
    - FAILED with the debit refunded once (``refunded=true``) or never made (``refunded=false``), no credit.

    Two escapes, each allowed only where the test made it the truth:

    - REFUND_PENDING (FAILED, ``refunded=false``): only with ``refund_refused`` (the test made the refund leg
      fail for good), and only with the ledger the words describe: the debit made, no credit, no refund.
    - OUTCOME_UNCONFIRMED (results status UNCONFIRMED, ``refunded=false``): only with ``ledger_unreadable`` (the
      test made the bank's cancellations fail for good, so the ledger check after the refund could not run);
      the ledger may then hold anything each leg can (at most once)."""
    assert bank.wait_idle(60), "the bank still has requests in flight"
    debits, credits, refunds = money(bank, transfer.tracker_id)
    assert debits <= 1 and credits <= 1 and refunds <= 1, (debits, credits, refunds)
    assert transfer.execution["status"] != "RUNNING"
    assert transfer.status in FINAL, f"tracker left {transfer.status} after the execution ended"
    value = Decimal(amount)
    delta_source = bank.balance(source) - opening[source]
    delta_destination = bank.balance(destination) - opening[destination]
    assert delta_source == value * (refunds - debits) and delta_destination == value * credits
    code = transfer.outcome.get("errorCode")
    if transfer.status == "SUCCEEDED":
        assert (debits, credits, refunds) == (1, 1, 0), (debits, credits, refunds)
        return
    if code == "OUTCOME_UNCONFIRMED":
        assert ledger_unreadable, f"OUTCOME_UNCONFIRMED although the ledger could be read: {(debits, credits, refunds)}"
        assert transfer.outcome["status"] == "UNCONFIRMED" and transfer.outcome["refunded"] == "false"
        return
    assert credits == 0, f"a credit landed and the caller is told {transfer.outcome}"
    if code == "REFUND_PENDING":
        assert refund_refused, f"REFUND_PENDING although the refund was not made to fail: {(debits, credits, refunds)}"
        assert (debits, refunds) == (1, 0), f"REFUND_PENDING for a ledger of {(debits, credits, refunds)}"
        assert transfer.outcome["refunded"] == "false", transfer.outcome
        return
    # FAILED and exact: the debit refunded once or never made, no credit, the answer says which.
    assert debits == refunds, (debits, refunds, transfer.outcome)
    assert transfer.outcome["refunded"] == ("true" if refunds else "false"), (transfer.outcome, refunds)
