"""One test per path of the transfer saga: the real ASL on moto's engine, the real handlers, the sandbox bank
and its fault injector. Each checks the attempts (every Retry and Catch), the final status and the ledger."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import pytest

from holdline_local import moto_adapter
from holdline_local.sandbox_bank import FaultKind, SandboxBank
from holdline_local.stack import LocalStack
from tests.helpers import history_text
from tests.workflow.conftest import PAST_THE_FUNCTION_TIMEOUT
from tests.workflow.saga import Transfer, assert_invariants, finish, money, new_account, run, start, warm

HAPPY = [
    "RecordValidating",
    "Validate",
    "PreChecks",
    "ScreenFraud",
    "CheckDailyLimit",
    "RecordDebiting",
    "Debit",
    "DebitSettled",
    "RecordCrediting",
    "Credit",
    "CreditSettled",
    "RecordConfirming",
    "Confirm",
    "RecordSucceeded",
]


def transfer(
    stack: LocalStack,
    bank: SandboxBank,
    source: str,
    destination: str,
    amount: str = "10.00",
    *,
    refund_refused: bool = False,
) -> Transfer:
    opening = {source: bank.balance(source), destination: bank.balance(destination)}
    result = run(stack, source, destination, amount)
    assert_invariants(bank, result, source, destination, amount, opening, refund_refused=refund_refused)
    text = history_text(stack, result.tracker_id)
    assert source not in text and destination not in text, "account numbers in the execution history"
    return result


def accounts(bank: SandboxBank) -> tuple[str, str]:
    return new_account(bank), new_account(bank, "0.00", "SAV")


# ---- success ----------------------------------------------------------------------------------------------


def test_success_moves_the_money_once(stack: LocalStack, bank: SandboxBank) -> None:
    source, destination = accounts(bank)
    total = bank.total_balance()
    result = transfer(stack, bank, source, destination, "25.50")
    assert result.execution["status"] == "SUCCEEDED"
    assert result.outcome["status"] == "SUCCEEDED" and result.outcome["amount"] == "25.50"
    assert result.outcome["confirmationNumber"].startswith("HL")
    assert money(bank, result.tracker_id) == (1, 1, 0)
    assert (bank.balance(source), bank.balance(destination)) == (Decimal("974.50"), Decimal("25.50"))
    assert bank.total_balance() == total
    assert result.row["stepsDone"]["N"] == "3" and result.row["step"]["S"] == "DONE"
    assert sorted(result.entered()) == sorted(HAPPY)  # the two branches of PreChecks may interleave
    assert result.entered()[:3] == HAPPY[:3] and result.entered()[5:] == HAPPY[5:]


# ---- validate: nothing moves -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("destination", "code"), [("CHK-00000404", "ACCOUNT_NOT_FOUND"), ("CHK-00000423", "ACCOUNT_FROZEN")]
)
def test_validation_refusal_fails_at_once_without_money(
    stack: LocalStack, bank: SandboxBank, destination: str, code: str
) -> None:
    source = new_account(bank)
    result = run(stack, source, destination)
    assert result.outcome == {
        "status": "FAILED",
        "errorCode": code,
        "errorMessage": result.outcome["errorMessage"],
        "refunded": "false",
    }
    assert result.attempts("ValidateFunction") == 1  # a business error is never retried
    assert "Debit" not in result.entered() and "PreChecks" not in result.entered()
    assert bank.count(result.tracker_id) == 0 and bank.balance(source) == Decimal("1000.00")


def test_validation_retries_a_blip_then_goes_on(stack: LocalStack, bank: SandboxBank) -> None:
    source, destination = accounts(bank)
    fault = bank.inject(FaultKind.ERROR_5XX, leg="account", account=destination, times=2)
    result = transfer(stack, bank, source, destination)
    assert result.status == "SUCCEEDED" and fault.hits == 2
    assert result.attempts("ValidateFunction") == 3


def test_validation_gives_up_after_its_retries(stack: LocalStack, bank: SandboxBank) -> None:
    source, destination = accounts(bank)
    bank.inject(FaultKind.CONNECTION_RESET, leg="account", account=source)
    result = transfer(stack, bank, source, destination)
    assert result.outcome["errorCode"] == "BANK_UNAVAILABLE" and result.outcome["refunded"] == "false"
    assert result.attempts("ValidateFunction") == 5  # first try + 4 retries, then the States.ALL Catch
    assert bank.count(result.tracker_id) == 0


# ---- pre-checks (Parallel) --------------------------------------------------------------------------------


def test_fraud_screening_declines_without_saying_why(stack: LocalStack, bank: SandboxBank) -> None:
    source = new_account(bank)
    result = transfer(stack, bank, source, "CHK-00000451")
    assert result.outcome["errorCode"] == "BANK_REJECTED"
    assert "fraud" not in result.outcome["errorMessage"].lower()
    assert result.attempts("FraudCheckFunction") == 1
    assert "RecordDebiting" not in result.entered() and bank.count(result.tracker_id) == 0


def test_daily_limit_exceeded(stack: LocalStack, bank: SandboxBank) -> None:
    destination = new_account(bank, "0.00", "SAV")
    before = bank.balance("CHK-00000460")
    result = run(stack, "CHK-00000460", destination, "150.00")
    assert result.outcome["errorCode"] == "LIMIT_EXCEEDED" and result.attempts("LimitCheckFunction") == 1
    assert bank.count(result.tracker_id) == 0 and bank.balance("CHK-00000460") == before


def test_daily_limit_counts_todays_debits(stack: LocalStack, bank: SandboxBank) -> None:
    source, destination = new_account(bank, daily_limit="100.00"), new_account(bank, "0.00", "SAV")
    assert transfer(stack, bank, source, destination, "60.00").status == "SUCCEEDED"
    refused = transfer(stack, bank, source, destination, "50.00")
    assert refused.outcome["errorCode"] == "LIMIT_EXCEEDED" and bank.count(refused.tracker_id) == 0
    assert transfer(stack, bank, source, destination, "40.00").status == "SUCCEEDED"


def test_throttled_screening_backs_off_then_passes(stack: LocalStack, bank: SandboxBank) -> None:
    source, destination = accounts(bank)
    fault = bank.inject(FaultKind.THROTTLE, leg="screening", account=source, times=2, retry_after=1)
    result = transfer(stack, bank, source, destination)
    assert result.status == "SUCCEEDED" and fault.hits == 2
    # The first attempt waits one Retry-After out itself; the second 429 leaves too little of its budget for
    # another wait, so it raises BankThrottled and the state machine retries it.
    assert result.attempts("FraudCheckFunction") == 2 and result.attempts("LimitCheckFunction") == 1


def test_pre_check_that_keeps_failing_fails_the_transfer(stack: LocalStack, bank: SandboxBank) -> None:
    source, destination = accounts(bank)
    bank.inject(FaultKind.THROTTLE, leg="screening", account=source)
    result = transfer(stack, bank, source, destination)
    assert result.outcome["errorCode"] == "BANK_UNAVAILABLE"
    assert result.attempts("FraudCheckFunction") == 6  # the BankThrottled retrier allows 5 retries
    assert bank.count(result.tracker_id) == 0


# ---- debit ---------------------------------------------------------------------------------------------------


def test_insufficient_funds_is_not_retried(stack: LocalStack, bank: SandboxBank) -> None:
    source, destination = new_account(bank, "5.00"), new_account(bank, "0.00", "SAV")
    result = transfer(stack, bank, source, destination, "250.00")
    assert result.outcome["errorCode"] == "INSUFFICIENT_FUNDS" and result.outcome["refunded"] == "false"
    assert result.attempts("DebitFunction") == 1 and "Refund" not in result.entered()
    assert bank.count(result.tracker_id) == 0


@pytest.mark.parametrize(
    "fault",
    [
        {"kind": FaultKind.ERROR_5XX, "times": 1},
        {"kind": FaultKind.CONNECTION_RESET, "times": 1},
        {"kind": FaultKind.THROTTLE, "times": 1},
    ],
    ids=["5xx", "reset", "429"],
)
def test_debit_fails_once_then_succeeds(stack: LocalStack, bank: SandboxBank, fault: dict[str, object]) -> None:
    source, destination = accounts(bank)
    injected = bank.inject(leg="debit", account=source, **fault)  # type: ignore[arg-type]
    result = transfer(stack, bank, source, destination)
    assert result.status == "SUCCEEDED" and injected.hits == 1
    if fault["kind"] is FaultKind.THROTTLE:
        # A 429 moved nothing: the leg waits its Retry-After out and posts again, within the same attempt.
        assert result.attempts("DebitFunction") == 1
    else:
        assert result.attempts("DebitFunction") == 2
        assert bank.requests_seen("lookup", reference=result.tracker_id) >= 1  # the retry looked the debit up first
    assert money(bank, result.tracker_id) == (1, 1, 0)


def test_bank_down_on_debit_exhausts_retries_and_refunds_nothing(stack: LocalStack, bank: SandboxBank) -> None:
    source, destination = accounts(bank)
    bank.inject(FaultKind.ERROR_5XX, leg="debit", account=source)
    result = transfer(stack, bank, source, destination)
    assert result.outcome["errorCode"] == "BANK_UNAVAILABLE" and result.outcome["refunded"] == "false"
    assert result.attempts("DebitFunction") == 5 and result.attempts("RefundFunction") == 1
    assert bank.requests_seen("cancel", reference=result.tracker_id) == 2  # debit and credit keys burnt
    assert bank.count(result.tracker_id) == 0


def test_debit_answered_after_its_function_timed_out_lands_once(stack: LocalStack, bank: SandboxBank) -> None:
    """The bank commits the debit and answers after the Debit function's Timeout (8 s, scaled): the leg stops
    waiting at its budget, before Lambda would stop it, and raises BankTimeout; the Retry that names it looks
    the debit up by its key and carries on: one debit."""
    source, destination = accounts(bank)
    fault = bank.inject(
        FaultKind.TIMEOUT_AFTER_COMMIT, leg="debit", account=source, times=1, seconds=PAST_THE_FUNCTION_TIMEOUT
    )
    warm(stack, "DebitFunction")
    result = transfer(stack, bank, source, destination)
    assert result.status == "SUCCEEDED" and fault.hits == 1
    assert result.attempts("DebitFunction") == 2
    assert result.task_errors() == ["BankTimeout"]  # the leg's budget, before the function's Timeout
    assert money(bank, result.tracker_id) == (1, 1, 0)


@pytest.mark.parametrize("status", [408, 403, 400])
def test_debit_that_landed_late_whose_look_up_is_refused_is_refunded(
    stack: LocalStack, bank: SandboxBank, status: int
) -> None:
    """Issue 19, case 1: the first debit lands but answers after the leg's budget; the retry's look-up is refused
    by something in front of the bank (408, a WAF's 403, a proxy's 400). The refusal of a look-up says nothing
    about the debit, so the saga must not end FAILED with nothing refunded: it compensates, and the refund's
    cancellation finds the debit that landed and gives it back."""
    source, destination = accounts(bank)
    bank.inject(FaultKind.TIMEOUT_AFTER_COMMIT, leg="debit", account=source, times=1, seconds=PAST_THE_FUNCTION_TIMEOUT)
    lookups = bank.inject(FaultKind.ERROR, leg="lookup", account=source, status=status)
    opening = {source: bank.balance(source), destination: bank.balance(destination)}
    warm(stack, "DebitFunction")
    result = run(stack, source, destination)
    assert lookups.hits >= 1
    assert_invariants(bank, result, source, destination, "10.00", opening)
    assert result.outcome["refunded"] == "true", result.outcome
    assert money(bank, result.tracker_id) == (1, 0, 1)
    assert bank.balance(source) == Decimal("1000.00")


def test_debit_that_lands_after_the_saga_gave_up_moves_nothing(stack: LocalStack, bank: SandboxBank) -> None:
    """The bank holds every debit attempt until the saga has given up: each Debit attempt gives up at its budget
    (BankTimeout, before Lambda's Timeout), five times, the refund finds no debit and burns its key. Then the
    bank lets the held debits through, late, as a real one would: each is refused, so no money moves, ever."""
    source, destination = accounts(bank)
    held = bank.inject(FaultKind.HOLD, leg="debit", account=source, seconds=60)
    warm(stack, "DebitFunction")
    previous = moto_adapter.set_timeout_scale(0.1)  # 0.8 s per attempt: five attempts in a few seconds
    opening = {source: bank.balance(source), destination: bank.balance(destination)}
    try:
        result = run(stack, source, destination)
    finally:
        moto_adapter.set_timeout_scale(previous)
        held.release()
    assert_invariants(bank, result, source, destination, "10.00", opening)  # once the held debits went through
    assert result.outcome.get("errorCode") == "BANK_UNAVAILABLE", result.outcome
    assert result.outcome["refunded"] == "false"
    assert result.attempts("DebitFunction") == 5
    # Each attempt gives up at its budget; on a slow machine Lambda's Timeout or the task's own TimeoutSeconds
    # may still fire first (as on AWS): all are retried, none moves money.
    errors = result.task_errors()
    assert errors[0] == "BankTimeout" and set(errors) <= {"BankTimeout", "Sandbox.Timedout", "States.Timeout"}, errors
    deadline = time.monotonic() + 10
    while held.hits < 5 and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)  # the released debits reach the bank's ledger logic
    assert money(bank, result.tracker_id) == (0, 0, 0)
    assert bank.balance(source) == Decimal("1000.00")


def test_slow_settlement_is_polled_until_settled(stack: LocalStack, bank: SandboxBank) -> None:
    source, destination = accounts(bank)
    bank.inject(FaultKind.SLOW_SETTLEMENT, leg="debit", account=source, checks=3)
    bank.inject(FaultKind.SLOW_SETTLEMENT, leg="credit", account=destination, checks=2)
    result = transfer(stack, bank, source, destination)
    assert result.status == "SUCCEEDED"
    entered = result.entered()
    assert entered.count("CheckDebitSettlement") == 3 and entered.count("WaitForDebitSettlement") == 3
    assert entered.count("CheckCreditSettlement") == 2


def test_debit_that_never_settles_in_time_is_refunded(stack: LocalStack, bank: SandboxBank) -> None:
    source, destination = accounts(bank)
    bank.inject(FaultKind.SLOW_SETTLEMENT, leg="debit", account=source, checks=50)
    result = transfer(stack, bank, source, destination)
    assert result.outcome["errorCode"] == "BANK_UNAVAILABLE" and result.outcome["refunded"] == "true"
    assert result.row["failureError"]["S"] == "SettlementTimeout"
    assert result.entered().count("CheckDebitSettlement") == 8 and "DebitNotSettled" in result.entered()
    assert money(bank, result.tracker_id) == (1, 0, 1)


# ---- credit, confirm, refund ---------------------------------------------------------------------------------


def test_failed_credit_refunds_the_debit(stack: LocalStack, bank: SandboxBank) -> None:
    source, destination = accounts(bank)
    total = bank.total_balance()
    bank.inject(FaultKind.ERROR_5XX, leg="credit", account=destination)
    result = transfer(stack, bank, source, destination)
    assert result.outcome["errorCode"] == "BANK_UNAVAILABLE" and result.outcome["refunded"] == "true"
    assert result.attempts("CreditFunction") == 5 and result.attempts("RefundFunction") == 1
    assert money(bank, result.tracker_id) == (1, 0, 1)
    assert bank.balance(source) == Decimal("1000.00") and bank.total_balance() == total


def test_refund_that_fails_twice_is_retried_with_its_key(stack: LocalStack, bank: SandboxBank) -> None:
    source, destination = accounts(bank)
    bank.inject(FaultKind.ERROR_5XX, leg="credit", account=destination)
    refund_fault = bank.inject(FaultKind.ERROR_5XX, leg="refund", account=source, times=2)
    result = transfer(stack, bank, source, destination)
    assert result.outcome["refunded"] == "true" and refund_fault.hits == 2
    assert result.attempts("RefundFunction") == 3
    assert money(bank, result.tracker_id) == (1, 0, 1)


def test_refund_that_keeps_failing_ends_refund_pending(stack: LocalStack, bank: SandboxBank) -> None:
    source, destination = accounts(bank)
    bank.inject(FaultKind.ERROR_5XX, leg="credit", account=destination)
    bank.inject(FaultKind.ERROR_5XX, leg="refund", account=source, times=6)
    result = transfer(stack, bank, source, destination, refund_refused=True)
    assert result.outcome["status"] == "FAILED" and result.outcome["errorCode"] == "REFUND_PENDING"
    assert result.outcome["refunded"] == "false"
    assert result.row["failureError"]["S"] == "RefundPending" and result.row["step"]["S"] == "DONE"
    assert result.attempts("RefundFunction") == 6  # the cap: first try + 5 retries
    assert money(bank, result.tracker_id) == (1, 0, 0)
    assert result.execution["status"] == "SUCCEEDED"  # handled: the tracker says FAILED, RefundPending


def test_lookup_outage_after_both_legs_settled_still_succeeds(stack: LocalStack, bank: SandboxBank) -> None:
    """Both legs settled, then the bank's look-ups fail for good: the transfer has succeeded, whatever the bank
    says now. Confirm derives the confirmation number from the payment ids the saga already holds, so nothing
    compensates a completed transfer and the caller hears SUCCEEDED."""
    source, destination = accounts(bank)
    bank.inject(FaultKind.ERROR_5XX, leg="lookup", account=source)
    bank.inject(FaultKind.ERROR_5XX, leg="lookup", account=destination)
    result = transfer(stack, bank, source, destination)
    assert result.status == "SUCCEEDED", result.outcome
    assert result.outcome["confirmationNumber"].startswith("HL")
    assert "RecordRefunding" not in result.entered() and "Refund" not in result.entered()
    assert money(bank, result.tracker_id) == (1, 1, 0)


# ---- a leg's own time: every leg ends, or gives up typed, before its Lambda Timeout ------------------------------


def test_refund_whose_calls_together_outlast_its_timeout_still_refunds_once(
    stack: LocalStack, bank: SandboxBank
) -> None:
    """The credit fails for good, and every call the refund makes is slow (0.55 s against a Timeout of 2 s,
    scaled): one by one, the look-ups, the cancellation and the refund outlast the function, so every attempt
    was stopped at its Timeout and the transfer ended REFUND_PENDING although the refund had landed. The refund
    asks the bank only what it must (both keys cancelled side by side, then the refund) within its budget."""
    source, destination = accounts(bank)
    bank.inject(FaultKind.ERROR_5XX, leg="credit", account=destination)
    warm(stack, "RefundFunction")
    tracker_id = start(stack, source, destination)
    for leg in ("lookup", "cancel", "refund"):
        bank.inject(FaultKind.LATENCY, leg=leg, reference=tracker_id, seconds=0.55)
    opening = {source: Decimal("1000.00"), destination: Decimal("0.00")}
    result = finish(stack, tracker_id)
    assert_invariants(bank, result, source, destination, "10.00", opening)
    assert result.outcome["status"] == "FAILED" and result.outcome["refunded"] == "true", result.outcome
    assert result.outcome["errorCode"] == "BANK_UNAVAILABLE"
    assert "Sandbox.Timedout" not in result.task_errors(), result.task_errors()
    assert money(bank, tracker_id) == (1, 0, 1)


def test_debit_that_outlasts_its_budget_gives_up_typed_before_the_timeout(stack: LocalStack, bank: SandboxBank) -> None:
    """The bank takes longer than the function has: the leg's call is cut at its budget (the context's remaining
    time less a reserve) and raises BankTimeout, which Retry names, instead of being killed by Lambda."""
    source, destination = accounts(bank)
    bank.inject(FaultKind.LATENCY, leg="debit", account=source, times=1, seconds=PAST_THE_FUNCTION_TIMEOUT)
    warm(stack, "DebitFunction")
    result = transfer(stack, bank, source, destination)
    assert result.status == "SUCCEEDED", result.outcome
    assert result.task_errors() == ["BankTimeout"], result.task_errors()
    assert money(bank, result.tracker_id) == (1, 1, 0)


# ---- a refusal on a retried leg goes through the refund path ---------------------------------------------------


def test_conflict_on_a_retried_debit_never_skips_the_refund_path(stack: LocalStack, bank: SandboxBank) -> None:
    """The first debit is held by the bank past its attempt (it is still in flight when the saga moves on);
    every retry finds nothing under the key and its post gets 409 (the bank still processes the first request
    with that key). That refusal used to end the saga at RecordFailed with refunded=false, and the held debit
    landed afterwards: money gone, the caller told nothing moved. Now the 409 is retried, then the refund path
    burns the key, and the held debit, let through at last, moves nothing."""
    source, destination = accounts(bank)
    held = bank.inject(FaultKind.HOLD, leg="debit", account=source, times=1, seconds=60)
    bank.inject(FaultKind.CONFLICT, leg="debit", account=source)
    warm(stack, "DebitFunction")
    opening = {source: bank.balance(source), destination: bank.balance(destination)}
    try:
        result = run(stack, source, destination)
    finally:
        held.release()
    assert_invariants(bank, result, source, destination, "10.00", opening)
    assert result.status == "FAILED", result.outcome
    assert "Refund" in result.entered() and "RecordFailed" not in result.entered(), result.entered()
    assert result.attempts("DebitFunction") == 5 and "PaymentInFlight" in result.task_errors()
    assert held.hits == 1 and money(bank, result.tracker_id) == (0, 0, 0)
    assert result.outcome["refunded"] == "false"


def test_conflict_once_on_a_retried_debit_is_retried_and_succeeds(stack: LocalStack, bank: SandboxBank) -> None:
    source, destination = accounts(bank)
    bank.inject(FaultKind.LATENCY, leg="debit", account=source, times=1, seconds=PAST_THE_FUNCTION_TIMEOUT)
    bank.inject(FaultKind.CONFLICT, leg="debit", account=source, times=1)
    warm(stack, "DebitFunction")
    result = transfer(stack, bank, source, destination)
    assert result.status == "SUCCEEDED", result.outcome
    assert "PaymentInFlight" in result.task_errors(), result.task_errors()
    assert money(bank, result.tracker_id) == (1, 1, 0)


def test_insufficient_funds_on_the_first_attempt_still_fails_without_a_refund(
    stack: LocalStack, bank: SandboxBank
) -> None:
    source, destination = new_account(bank, "5.00"), new_account(bank, "0.00", "SAV")
    result = transfer(stack, bank, source, destination, "250.00")
    assert result.outcome["errorCode"] == "INSUFFICIENT_FUNDS" and result.outcome["refunded"] == "false"
    assert "RecordFailed" in result.entered() and "Refund" not in result.entered()


# ---- 429: Retry-After is honoured --------------------------------------------------------------------------------


def test_throttled_debit_is_not_retried_before_retry_after(stack: LocalStack, bank: SandboxBank) -> None:
    """The bank answers 429 with Retry-After: 1. The next debit request reaches the bank no sooner: the leg waits
    the Retry-After out within its budget (the state machine's retry interval, compressed on the local stack,
    plays no part in this measurement)."""
    source, destination = accounts(bank)
    fault = bank.inject(FaultKind.THROTTLE, leg="debit", account=source, times=1, retry_after=1)
    result = transfer(stack, bank, source, destination)
    assert result.status == "SUCCEEDED" and fault.hits == 1
    times = bank.request_times("debit", reference=result.tracker_id)
    assert len(times) == 2, times
    assert times[1] - times[0] >= 1.0, f"retried {times[1] - times[0]:.3f} s after a 429 with Retry-After: 1"


def test_confirm_that_cannot_run_still_ends_succeeded(stack: LocalStack, bank: SandboxBank) -> None:
    """Confirm itself cannot run (its function is throttled, past its retries): both legs settled, so the
    transfer succeeded all the same; the confirmation is the credit's own reference and nothing compensates."""
    source, destination = accounts(bank)
    lambdas = stack.client("lambda")
    # The template reserves concurrency for Confirm: put it back afterwards, not delete it (later tests rely on it).
    kept = lambdas.get_function_concurrency(FunctionName="ConfirmFunction").get("ReservedConcurrentExecutions")
    lambdas.put_function_concurrency(FunctionName="ConfirmFunction", ReservedConcurrentExecutions=0)
    try:
        result = transfer(stack, bank, source, destination)
    finally:
        if kept is None:
            lambdas.delete_function_concurrency(FunctionName="ConfirmFunction")
        else:
            lambdas.put_function_concurrency(FunctionName="ConfirmFunction", ReservedConcurrentExecutions=kept)
    assert result.status == "SUCCEEDED", result.outcome
    assert "Lambda.TooManyRequestsException" in result.task_errors(), result.task_errors()
    assert "ConfirmFromLegs" in result.entered() and "Refund" not in result.entered()
    assert result.outcome["confirmationNumber"].startswith("HL-pay_"), result.outcome
    assert money(bank, result.tracker_id) == (1, 1, 0)


# ---- truthful outcomes after a refund that did not complete (issue 19, case 2) -----------------------------------


def test_credit_that_landed_with_its_look_ups_down_ends_succeeded(stack: LocalStack, bank: SandboxBank) -> None:
    """Issue 19, case 2(a): the credit lands but answers after the leg's budget, and every look-up of it fails
    from then on. The refund's cancellation finds the credit (CompensationBlocked): the transfer happened. The
    ledger check confirms both legs and the caller hears SUCCEEDED, never "refund pending" (which invited a refund
    of a completed transfer: the suite's invariant used to accept it)."""
    source, destination = accounts(bank)
    bank.inject(
        FaultKind.TIMEOUT_AFTER_COMMIT, leg="credit", account=destination, times=1, seconds=PAST_THE_FUNCTION_TIMEOUT
    )
    bank.inject(FaultKind.ERROR_5XX, leg="lookup", account=destination)
    warm(stack, "CreditFunction")
    result = transfer(stack, bank, source, destination)
    assert result.status == "SUCCEEDED", result.outcome
    assert result.outcome["confirmationNumber"].startswith("HL"), result.outcome
    entered = result.entered()
    assert "Refund" in entered and "CheckLedger" in entered and "UseLedgerLegs" in entered, entered
    assert "failureError" not in result.row, result.row
    assert money(bank, result.tracker_id) == (1, 1, 0)


def test_debit_and_refund_throttled_tell_nothing_moved_not_refund_pending(stack: LocalStack, bank: SandboxBank) -> None:
    """Issue 19, case 2(b): the Lambda service throttles Debit and Refund past their retries, so no debit ever
    reached the bank (ledger 0/0/0). The ledger check finds no payment under any key: FAILED, nothing taken
    (refunded=false, not REFUND_PENDING), and no person is asked to give back money that was never taken."""
    source, destination = accounts(bank)
    for function in ("DebitFunction", "RefundFunction"):
        stack.runtime.refuse(function, "TooManyRequestsException", times=12)
    try:
        result = transfer(stack, bank, source, destination)
    finally:
        for function in ("DebitFunction", "RefundFunction"):
            stack.runtime.clear_refusals(function)
    assert result.outcome["status"] == "FAILED" and result.outcome["errorCode"] != "REFUND_PENDING", result.outcome
    assert result.outcome["refunded"] == "false"
    assert "CheckLedger" in result.entered() and "NothingMovedInLedger" in result.entered(), result.entered()
    assert money(bank, result.tracker_id) == (0, 0, 0)


@pytest.mark.parametrize("status", [400, 403])
def test_refund_refused_for_good_is_refund_pending_with_its_cause(
    stack: LocalStack, bank: SandboxBank, status: int
) -> None:
    """Issue 19, case 2(c): the one pending refund. The debit landed, the credit failed, and the bank refuses the
    refund itself (a 4xx: not retried). The ledger holds the debit and nothing else: REFUND_PENDING, and the row
    keeps why the refund was not made (it used to write the constant and drop the cause)."""
    source, destination = accounts(bank)
    bank.inject(FaultKind.ERROR_5XX, leg="credit", account=destination)
    bank.inject(FaultKind.ERROR, leg="refund", account=source, status=status)
    result = transfer(stack, bank, source, destination, refund_refused=True)
    assert result.outcome["errorCode"] == "REFUND_PENDING" and result.outcome["refunded"] == "false", result.outcome
    assert result.row["refundError"]["S"] == "BankRejected", result.row
    assert result.attempts("RefundFunction") == 1  # a refusal is not retried
    assert money(bank, result.tracker_id) == (1, 0, 0)


def test_ledger_that_cannot_be_read_is_outcome_unconfirmed(stack: LocalStack, bank: SandboxBank) -> None:
    """The refund fails and so does every cancellation, so the bank cannot say what it holds: neither "failed"
    nor "refund pending" would be the truth. The caller hears OUTCOME_UNCONFIRMED (status UNCONFIRMED: do not
    repeat it, we will call you), and the failure needs a person."""
    source, destination = accounts(bank)
    bank.inject(FaultKind.ERROR_5XX, leg="credit", account=destination)
    bank.inject(FaultKind.ERROR_5XX, leg="cancel")  # every cancellation (this test runs alone; the fixture clears it)
    opening = {source: bank.balance(source), destination: bank.balance(destination)}
    result = finish(stack, start(stack, source, destination))
    assert_invariants(bank, result, source, destination, "10.00", opening, ledger_unreadable=True)
    assert result.outcome["status"] == "UNCONFIRMED" and result.outcome["errorCode"] == "OUTCOME_UNCONFIRMED"
    assert "do not repeat" in result.outcome["errorMessage"], result.outcome
    assert result.row["failureError"]["S"] == "OutcomeUnconfirmed" and "RecordOutcomeUnconfirmed" in result.entered()
    assert money(bank, result.tracker_id) == (1, 0, 0)
    # An agent gets a task (the failure needs a person) that states the ledger as the bank holds it now.
    task = _task_for(stack, result.tracker_id)
    assert task.request["Name"].startswith("Transfer outcome unconfirmed"), task.request["Name"]
    description = task.request["Description"]
    assert "debit found (SETTLED" in description and "credit not found" in description, description
    assert "refund not found" in description and source not in description


def _task_for(stack: LocalStack, tracker_id: str, timeout: float = 30) -> Any:
    """The agent's task for a transfer (the failure event, the follow-up trigger and its workflow run first)."""
    assert stack.connect is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for task in stack.connect.tasks:
            if task.request.get("References", {}).get("relatedTrackerId", {}).get("Value") == tracker_id:
                return task
        time.sleep(0.2)
    raise AssertionError(f"no task for {tracker_id} within {timeout} s")
