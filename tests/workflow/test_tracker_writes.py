"""Issue 19, case 3: the state machine's own tracker writes after the debit fail (DynamoDB throttling past their
retries, about 25 s of it). The money must still end where it should, and the row must end with the outcome the
saga knew: a progress write that fails is skipped, a final write that fails hands its outcome to the reconciler
(the execution fails with TrackerNotRecorded, the outcome as its cause).

The fault is injected into the engine's own DynamoDB client (the one the ``dynamodb:updateItem`` tasks use), for
one tracker only, as DynamoDB answers a throttled write: ``ProvisionedThroughputExceededException``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from botocore.exceptions import ClientError

from holdline.logic.starter import tracker_id_for
from holdline_local import moto_adapter
from holdline_local.sandbox_bank import FaultKind, SandboxBank
from holdline_local.stack import LocalStack
from tests.helpers import tracker_row
from tests.workflow.saga import Transfer, assert_invariants, event, finish, money, new_account

WritePredicate = Callable[[dict[str, Any]], bool]


class _ThrottledWrites:
    """A DynamoDB client whose UpdateItem calls for one tracker that match ``fails`` are throttled, every time."""

    def __init__(self, client: Any, tracker_id: str, fails: WritePredicate, hits: list[str]) -> None:
        self._client, self._tracker_id, self._fails, self._hits = client, tracker_id, fails, hits

    def update_item(self, **request: Any) -> Any:
        if request.get("Key", {}).get("trackerId", {}).get("S") == self._tracker_id and self._fails(request):
            self._hits.append(str(request.get("ExpressionAttributeValues", {}).get(":step", {}).get("S", "final")))
            raise ClientError(
                {
                    "Error": {"Code": "ProvisionedThroughputExceededException", "Message": "Rate of requests exceeds"},
                    "ResponseMetadata": {"HTTPStatusCode": 400, "RequestId": "THROTTLED"},
                },
                "UpdateItem",
            )
        return self._client.update_item(**request)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


@contextmanager
def throttled_tracker_writes(tracker_id: str, fails: WritePredicate) -> Iterator[list[str]]:
    """While inside: the engine's tracker writes for ``tracker_id`` that match ``fails`` are throttled. Yields the
    list of the writes refused (their step, or ``final``)."""
    hits: list[str] = []

    def wrap(client: Any, service: str) -> Any:
        return _ThrottledWrites(client, tracker_id, fails, hits) if service == "dynamodb" else client

    with moto_adapter.wrapped_executor_clients(wrap):
        yield hits


def at_step(*steps: str) -> WritePredicate:
    return lambda request: request.get("ExpressionAttributeValues", {}).get(":step", {}).get("S") in steps


def final_succeeded(request: dict[str, Any]) -> bool:
    return ":succeeded" in request.get("ExpressionAttributeValues", {})


def _run(stack: LocalStack, bank: SandboxBank, source: str, destination: str, fails: WritePredicate) -> Transfer:
    call = event({"fromAccount": source, "toAccount": destination, "amount": "10.00", "currency": "USD"})
    contact = call["Details"]["ContactData"]["ContactId"]
    tracker_id = tracker_id_for("transfer", contact, contact)
    with throttled_tracker_writes(tracker_id, fails) as hits:
        answer = stack.invoke("StarterFunction", call)
        assert answer["status"] == "STARTED" and answer["trackerId"] == tracker_id, answer
        result = finish(stack, tracker_id)
    assert hits, "no tracker write was throttled: the test proves nothing"
    return result


def _final_row(stack: LocalStack, tracker_id: str, timeout: float = 30) -> dict[str, Any]:
    """The row once it is final: the reconciler writes it after the execution's status change event."""
    deadline = time.monotonic() + timeout
    while True:
        row = tracker_row(stack, tracker_id)
        assert row is not None
        if row["status"]["S"] != "RUNNING" or time.monotonic() > deadline:
            return row
        time.sleep(0.2)


def test_progress_writes_throttled_after_the_debit_do_not_strand_the_money(
    stack: LocalStack, bank: SandboxBank
) -> None:
    """RecordCrediting and RecordConfirming are throttled past their retries: the execution used to end there,
    FAILED with the debit kept and Refund never entered (ledger 1/0/0). A progress write is skipped instead: the
    credit and the confirmation go on and the transfer succeeds."""
    source, destination = new_account(bank), new_account(bank, "0.00", "SAV")
    opening = {source: bank.balance(source), destination: bank.balance(destination)}
    result = _run(stack, bank, source, destination, at_step("CREDITING", "CONFIRMING"))
    assert_invariants(bank, result, source, destination, "10.00", opening)
    assert result.status == "SUCCEEDED", result.outcome
    assert money(bank, result.tracker_id) == (1, 1, 0)


def test_refunding_write_throttled_still_refunds(stack: LocalStack, bank: SandboxBank) -> None:
    """The credit fails for good and RecordRefunding is throttled past its retries: the refund still runs, and the
    final write records why the transfer failed (RecordRefunding would have)."""
    source, destination = new_account(bank), new_account(bank, "0.00", "SAV")
    bank.inject(FaultKind.ERROR_5XX, leg="credit", account=destination)
    opening = {source: bank.balance(source), destination: bank.balance(destination)}
    result = _run(stack, bank, source, destination, at_step("REFUNDING"))
    assert_invariants(bank, result, source, destination, "10.00", opening)
    assert result.outcome["refunded"] == "true" and result.outcome["errorCode"] == "BANK_UNAVAILABLE", result.outcome
    assert result.row["failureError"]["S"] == "BankUnavailable"
    assert money(bank, result.tracker_id) == (1, 0, 1) and bank.balance(source) == Decimal("1000.00")


def test_final_write_throttled_is_recorded_by_the_reconciler(stack: LocalStack, bank: SandboxBank) -> None:
    """RecordSucceeded is throttled past its retries after both legs settled. The execution fails with
    TrackerNotRecorded and the outcome as its cause; the reconciler writes SUCCEEDED with the confirmation number
    (it used to mark the completed transfer FAILED, ExecutionFailed)."""
    source, destination = new_account(bank), new_account(bank, "0.00", "SAV")
    result = _run(stack, bank, source, destination, final_succeeded)
    assert result.execution["status"] == "FAILED" and result.execution.get("error") == "TrackerNotRecorded"
    row = _final_row(stack, result.tracker_id)
    assert row["status"]["S"] == "SUCCEEDED", row
    assert row["confirmationNumber"]["S"].startswith("HL") and row["failureSource"]["S"] == "RECONCILER"
    outcome = stack.invoke("ResultsFunction", event({"trackerId": result.tracker_id}))
    assert outcome["status"] == "SUCCEEDED" and outcome["confirmationNumber"] == row["confirmationNumber"]["S"]
    assert money(bank, result.tracker_id) == (1, 1, 0)


def final_failed(request: dict[str, Any]) -> bool:
    return ":failed" in request.get("ExpressionAttributeValues", {})


@dataclass(frozen=True)
class WriteCase:
    fails: WritePredicate
    #: Bank faults (leg -> spec) that send the saga down the path where this write is made.
    path: tuple[tuple[str, dict[str, Any]], ...] = ()
    refund_refused: bool = False
    ledger_unreadable: bool = False
    error_code: str = ""


CREDIT_FAILS = ("credit", {"kind": FaultKind.ERROR_5XX})
WRITES: dict[str, WriteCase] = {
    "RecordCrediting": WriteCase(at_step("CREDITING")),
    "RecordConfirming": WriteCase(at_step("CONFIRMING")),
    "RecordSucceeded": WriteCase(final_succeeded),
    "RecordRefunding": WriteCase(at_step("REFUNDING"), (CREDIT_FAILS,), error_code="BANK_UNAVAILABLE"),
    "RecordFailedAfterRefund": WriteCase(final_failed, (CREDIT_FAILS,), error_code="BANK_UNAVAILABLE"),
    "RecordRefundPending": WriteCase(
        final_failed,
        (CREDIT_FAILS, ("refund", {"kind": FaultKind.ERROR, "status": 400})),
        refund_refused=True,
        error_code="REFUND_PENDING",
    ),
    "RecordOutcomeUnconfirmed": WriteCase(
        final_failed,
        (CREDIT_FAILS, ("cancel", {"kind": FaultKind.ERROR_5XX})),
        ledger_unreadable=True,
        error_code="OUTCOME_UNCONFIRMED",
    ),
}


@pytest.mark.parametrize("write", list(WRITES))
def test_each_tracker_write_after_the_debit_throttled_keeps_the_invariants(
    stack: LocalStack, bank: SandboxBank, write: str
) -> None:
    """The fault matrix for the saga's own writes: each write after the debit throttled for good, on the path that
    makes it. Once the reconciler has written what a failed final write could not, the row, the caller's answer and
    the ledger agree (tests/workflow/saga.py), and the answer is the one the path without the fault gives."""
    case = WRITES[write]
    source, destination = new_account(bank), new_account(bank, "0.00", "SAV")
    for leg, spec in case.path:
        # A cancellation carries the account of the payment it finds, or none: match it by leg alone (this test runs
        # alone; the fixture clears every fault after it).
        bank.inject(
            leg=leg, **({} if leg == "cancel" else {"account": destination if leg == "credit" else source}), **spec
        )
    opening = {source: bank.balance(source), destination: bank.balance(destination)}
    result = _run(stack, bank, source, destination, case.fails)
    row = _final_row(stack, result.tracker_id)
    outcome = stack.invoke("ResultsFunction", event({"trackerId": result.tracker_id}))
    settled = Transfer(result.tracker_id, result.execution, outcome, row, result.history)
    assert_invariants(
        bank,
        settled,
        source,
        destination,
        "10.00",
        opening,
        refund_refused=case.refund_refused,
        ledger_unreadable=case.ledger_unreadable,
    )
    if case.error_code:
        assert outcome.get("errorCode") == case.error_code, outcome
    else:
        assert outcome["status"] == "SUCCEEDED", outcome
