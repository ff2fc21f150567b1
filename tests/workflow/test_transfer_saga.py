"""The real transfer ASL on moto's Step Functions engine, with the real handlers and the sandbox bank.

Each test checks the money (the bank's ledger), the tracker and what the caller will hear.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from holdline.handlers import results, starter
from holdline_local.stack import LocalStack
from tests.helpers import history, history_text, tracker_row, wait_for_execution


def run_transfer(
    stack: LocalStack, connect_event: Any, lambda_context: Any, **parameters: str
) -> tuple[str, dict[str, Any], dict[str, str]]:
    params = {"toAccount": "SAV-00022222", "amount": "10.00", "currency": "USD", **parameters}
    params.setdefault("fromAccount", "CHK-00011111")
    answer = starter.handler(connect_event(params), lambda_context)
    assert answer["status"] == "STARTED", answer
    tracker_id = answer["trackerId"]
    execution = wait_for_execution(stack, tracker_id)
    outcome = results.handler(connect_event({"trackerId": tracker_id}), lambda_context)
    return tracker_id, execution, outcome


def test_success_moves_the_money_once(stack: LocalStack, connect_event: Any, lambda_context: Any) -> None:
    bank = stack.bank
    assert bank is not None
    total_before = bank.total_balance()
    source_before, dest_before = bank.balance("CHK-00011111"), bank.balance("SAV-00022222")
    tracker_id, execution, outcome = run_transfer(stack, connect_event, lambda_context, amount="25.50")
    assert execution["status"] == "SUCCEEDED"
    assert outcome["status"] == "SUCCEEDED" and outcome["amount"] == "25.50"
    assert bank.balance("CHK-00011111") == source_before - Decimal("25.50")
    assert bank.balance("SAV-00022222") == dest_before + Decimal("25.50")
    assert bank.total_balance() == total_before
    assert (bank.count(tracker_id, "debit"), bank.count(tracker_id, "credit"), bank.count(tracker_id, "refund")) == (
        1,
        1,
        0,
    )
    row = tracker_row(stack, tracker_id)
    assert row is not None and row["status"]["S"] == "SUCCEEDED" and row["stepsDone"]["N"] == "3"
    entered = [
        e["stateEnteredEventDetails"]["name"] for e in history(stack, tracker_id) if "stateEnteredEventDetails" in e
    ]
    assert entered == [
        "RecordDebiting",
        "Debit",
        "RecordCrediting",
        "Credit",
        "RecordConfirming",
        "Confirm",
        "RecordSucceeded",
    ]


def test_insufficient_funds_fails_without_moving_money(
    stack: LocalStack, connect_event: Any, lambda_context: Any
) -> None:
    bank = stack.bank
    assert bank is not None
    before = bank.balance("CHK-00000402")
    tracker_id, execution, outcome = run_transfer(
        stack, connect_event, lambda_context, fromAccount="CHK-00000402", amount="250.00"
    )
    assert execution["status"] == "SUCCEEDED"  # the saga handled it: the outcome is on the tracker
    assert outcome == {
        "status": "FAILED",
        "errorCode": "INSUFFICIENT_FUNDS",
        "errorMessage": "There are not enough funds in the source account.",
        "refunded": "false",
    }
    assert bank.balance("CHK-00000402") == before
    assert bank.count(tracker_id) == 0
    # A business refusal is not retried: the debit ran once.
    debit_attempts = [e for e in history(stack, tracker_id) if e["type"] == "TaskScheduled"]
    assert sum(1 for e in debit_attempts if "DebitFunction" in str(e)) == 1


def test_failed_credit_refunds_the_debit(stack: LocalStack, connect_event: Any, lambda_context: Any) -> None:
    bank = stack.bank
    assert bank is not None
    before = bank.balance("CHK-00011111")
    total_before = bank.total_balance()
    tracker_id, _, outcome = run_transfer(stack, connect_event, lambda_context, toAccount="CHK-00000404")
    assert outcome["status"] == "FAILED" and outcome["errorCode"] == "ACCOUNT_NOT_FOUND"
    assert outcome["refunded"] == "true"
    assert (bank.count(tracker_id, "debit"), bank.count(tracker_id, "credit"), bank.count(tracker_id, "refund")) == (
        1,
        0,
        1,
    )
    assert bank.balance("CHK-00011111") == before
    assert bank.total_balance() == total_before


def test_bank_down_is_retried_then_fails_cleanly(stack: LocalStack, connect_event: Any, lambda_context: Any) -> None:
    bank = stack.bank
    assert bank is not None
    tracker_id, _, outcome = run_transfer(stack, connect_event, lambda_context, fromAccount="CHK-00000503")
    assert outcome["status"] == "FAILED" and outcome["errorCode"] == "BANK_UNAVAILABLE"
    assert outcome["refunded"] == "false"  # the refund found no debit to give back
    assert bank.count(tracker_id) == 0
    attempts = [e for e in history(stack, tracker_id) if e["type"] == "TaskFailed"]
    assert len(attempts) == 5  # the first try and 4 retries, then the Catch


def test_execution_carries_no_account_numbers(stack: LocalStack, connect_event: Any, lambda_context: Any) -> None:
    tracker_id, _, _ = run_transfer(stack, connect_event, lambda_context)
    text = history_text(stack, tracker_id)
    assert "CHK-00011111" not in text and "SAV-00022222" not in text
    assert "00011111" not in text
