"""Every fault at every leg, checked against the saga's invariants (tests/workflow/saga.py): at most one debit,
one credit and one refund per transfer; no tracker left RUNNING once its execution ended; and an exact outcome
(SUCCEEDED with both legs once, or FAILED with the debit refunded once or never made), REFUND_PENDING only where
the refund itself was made to fail for good and the ledger holds the debit alone, OUTCOME_UNCONFIRMED only where the
ledger was made unreadable.

Beside the bank's faults (here, by leg): the Lambda service throttling each leg past its retries (below), DynamoDB
throttling each tracker write after the debit (tests/workflow/test_tracker_writes.py), a row whose execution never
started (tests/functional/test_not_started.py) and a leg answer its ResultSelector cannot read (the engine fails the
execution with States.Runtime, tests/functional/test_engine_strictness.py; no leg answers so,
tests/unit/test_leg_answers.py).

Each fault is one test; its legs run concurrently (each transfer has accounts of its own, so per-account
faults hit only it), which keeps the matrix at a few seconds per fault.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest

from holdline_local.sandbox_bank import FaultKind, SandboxBank
from holdline_local.stack import LocalStack
from tests.workflow.conftest import PAST_THE_FUNCTION_TIMEOUT
from tests.workflow.saga import Transfer, assert_invariants, finish, new_account, start

# Which account a leg's requests carry: the fault targets it (lookups carry the payment's account).
LEG_TARGET = {
    "account": "source",
    "screening": "source",
    "debit": "source",
    "credit": "destination",
    "lookup": "source",
    "refund": "source",
}
PAYMENTS = ("debit", "credit", "refund")


@dataclass(frozen=True)
class MatrixFault:
    #: The faults injected at the leg, in order (the first that matches a request applies).
    faults: tuple[dict[str, Any], ...]
    #: The legs it is injected at (all of LEG_TARGET by default).
    legs: tuple[str, ...] = tuple(LEG_TARGET)
    #: The fault clears up (every fault is times-limited): the transfer must not pay for it.
    clears: bool = False
    #: Injected at the look-ups of both accounts, not only the leg's target.
    both_accounts: bool = False
    #: Injected at the look-ups (by key) of the leg's target too: what a retry of the leg, or a settlement check,
    #: meets when it asks the bank whether the attempt before landed.
    lookups: tuple[dict[str, Any], ...] = ()
    expect: dict[str, str] = field(default_factory=dict)


def _once(kind: FaultKind, **options: Any) -> dict[str, Any]:
    return {"kind": kind, "times": 1, **options}


FAULTS: dict[str, MatrixFault] = {
    "5xx-once": MatrixFault(({"kind": FaultKind.ERROR_5XX, "times": 1},), clears=True),
    "5xx-always": MatrixFault(({"kind": FaultKind.ERROR_5XX},)),
    "429-twice": MatrixFault(({"kind": FaultKind.THROTTLE, "times": 2},), clears=True),
    "reset-once": MatrixFault(({"kind": FaultKind.CONNECTION_RESET, "times": 1},), clears=True),
    "reset-always": MatrixFault(({"kind": FaultKind.CONNECTION_RESET},)),
    "latency-past-function-timeout": MatrixFault(
        (_once(FaultKind.LATENCY, seconds=PAST_THE_FUNCTION_TIMEOUT),), clears=True
    ),
    # Every request of the leg outlasts the function's Timeout, on every attempt: each attempt gives up at its
    # budget (typed, retried); a request that lands after its attempt gave up is found or cancelled later.
    "slower-than-function-timeout-always": MatrixFault(
        ({"kind": FaultKind.LATENCY, "seconds": PAST_THE_FUNCTION_TIMEOUT},)
    ),
    "timeout-after-commit": MatrixFault(
        (_once(FaultKind.TIMEOUT_AFTER_COMMIT, seconds=PAST_THE_FUNCTION_TIMEOUT),), clears=True
    ),
    "slow-settlement": MatrixFault(({"kind": FaultKind.SLOW_SETTLEMENT, "checks": 3},), clears=True),
    "half-the-requests-fail": MatrixFault(({"kind": FaultKind.ERROR_5XX, "rate": 0.5},)),
    # The first post is slow (it lands after its attempt gave up); the retry's post gets 409 while the bank
    # still processes the first request with that key.
    "409-on-the-retried-post": MatrixFault(
        (_once(FaultKind.LATENCY, seconds=PAST_THE_FUNCTION_TIMEOUT), _once(FaultKind.CONFLICT)),
        legs=PAYMENTS,
        clears=True,
    ),
    # Something in front of the bank refuses every request with a 4xx that is not the bank's own answer (a gateway's
    # 408): a first attempt's refusal moved nothing; a retry's refusal compensates.
    "408-always": MatrixFault(({"kind": FaultKind.ERROR, "status": 408},)),
    # The payment lands but answers after its attempt gave up, and every look-up of it is then refused (408) or
    # fails (5xx): the retry cannot tell whether it landed, so only the ledger check after the refund can.
    "landed-late-then-4xx-on-the-look-up": MatrixFault(
        (_once(FaultKind.TIMEOUT_AFTER_COMMIT, seconds=PAST_THE_FUNCTION_TIMEOUT),),
        legs=PAYMENTS,
        lookups=({"kind": FaultKind.ERROR, "status": 408},),
    ),
    "landed-late-with-look-ups-down": MatrixFault(
        (_once(FaultKind.TIMEOUT_AFTER_COMMIT, seconds=PAST_THE_FUNCTION_TIMEOUT),),
        legs=PAYMENTS,
        lookups=({"kind": FaultKind.ERROR_5XX},),
        expect={"credit": "SUCCEEDED"},
    ),
    # The bank's look-ups fail for good; nothing else does: both legs settle, and the transfer succeeded.
    "lookup-outage-after-both-legs-settled": MatrixFault(
        ({"kind": FaultKind.ERROR_5XX},), legs=("lookup",), both_accounts=True, expect={"lookup": "SUCCEEDED"}
    ),
}


@dataclass
class Case:
    leg: str
    source: str
    destination: str
    opening: dict[str, Decimal]
    tracker_id: str = ""


def _setup(bank: SandboxBank, leg: str, fault: MatrixFault) -> Case:
    source, destination = new_account(bank), new_account(bank, "0.00", "SAV")
    targets = [source, destination] if fault.both_accounts else [source if LEG_TARGET[leg] == "source" else destination]
    for target in targets:
        for spec in fault.faults:
            bank.inject(leg=leg, account=target, **spec)
        for spec in fault.lookups:
            bank.inject(leg="lookup", account=target, **spec)
    if leg == "refund":
        # A refund only runs after a failure: make the credit fail for good, so the refund leg carries the fault.
        bank.inject(FaultKind.ERROR_5XX, leg="credit", account=destination)
    return Case(leg, source, destination, {source: bank.balance(source), destination: bank.balance(destination)})


@pytest.mark.parametrize("fault_name", list(FAULTS))
def test_fault_at_every_leg_keeps_the_invariants(stack: LocalStack, bank: SandboxBank, fault_name: str) -> None:
    fault = FAULTS[fault_name]
    cases = [_setup(bank, leg, fault) for leg in fault.legs]
    for case in cases:
        case.tracker_id = start(stack, case.source, case.destination)

    with ThreadPoolExecutor(max_workers=len(cases)) as pool:
        transfers: list[Transfer] = list(pool.map(lambda c: finish(stack, c.tracker_id, timeout=120), cases))

    for case, transfer in zip(cases, transfers, strict=True):
        # Only a refund leg that was made to fail for good may leave the refund to a person.
        refund_refused = case.leg == "refund" and not fault.clears
        try:
            assert_invariants(
                bank, transfer, case.source, case.destination, "10.00", case.opening, refund_refused=refund_refused
            )
        except AssertionError as exc:
            raise AssertionError(f"{fault_name} at {case.leg}: {exc}; outcome {transfer.outcome}") from exc
        expected = fault.expect.get(case.leg)
        if fault.clears:
            # A fault that clears up must not cost the transfer (except the refund leg, which only runs after
            # the credit was made to fail).
            expected = "FAILED" if case.leg == "refund" else "SUCCEEDED"
            if case.leg == "refund":
                assert transfer.outcome["refunded"] == "true", f"{fault_name} at refund: {transfer.outcome}"
        if expected:
            assert transfer.status == expected, f"{fault_name} at {case.leg}: {transfer.outcome}"


# ---- the Lambda service throttling a leg past its retries ---------------------------------------------------
@dataclass(frozen=True)
class Throttled:
    functions: tuple[str, ...]
    #: The credit fails for good, so the refund path runs (where the throttled function is on it).
    credit_fails: bool = False
    refund_refused: bool = False
    ledger_unreadable: bool = False
    expect: str = ""


THROTTLED: dict[str, Throttled] = {
    "validate": Throttled(("ValidateFunction",), expect="FAILED"),
    "fraud-check": Throttled(("FraudCheckFunction",), expect="FAILED"),
    "debit": Throttled(("DebitFunction",), expect="FAILED"),
    "credit": Throttled(("CreditFunction",), expect="FAILED"),
    "settlement-and-confirm": Throttled(("SettlementFunction", "ConfirmFunction"), expect="SUCCEEDED"),
    # The refund cannot run: the ledger check finds the debit kept, a pending refund (a person gives it back).
    "refund": Throttled(("RefundFunction",), credit_fails=True, refund_refused=True, expect="FAILED"),
    # Neither the refund nor the ledger check can run: nobody can say what the bank holds.
    "refund-and-ledger-check": Throttled(
        ("RefundFunction", "LedgerCheckFunction"), credit_fails=True, refund_refused=True, ledger_unreadable=True
    ),
}


@pytest.mark.parametrize("name", list(THROTTLED))
def test_a_leg_throttled_past_its_retries_keeps_the_invariants(stack: LocalStack, bank: SandboxBank, name: str) -> None:
    """Every Invoke of the function is refused (TooManyRequestsException, as Lambda answers at a reserved
    concurrency): its task retries, then its Catch decides. The invariants hold, and the outcome is what the
    ledger says (a throttled debit moved nothing: never REFUND_PENDING)."""
    case = THROTTLED[name]
    source, destination = new_account(bank), new_account(bank, "0.00", "SAV")
    if case.credit_fails:
        bank.inject(FaultKind.ERROR_5XX, leg="credit", account=destination)
    opening = {source: bank.balance(source), destination: bank.balance(destination)}
    for function in case.functions:
        stack.runtime.refuse(function, "TooManyRequestsException", times=1000)
    try:
        transfer = finish(stack, start(stack, source, destination), timeout=120)
    finally:
        for function in case.functions:
            stack.runtime.clear_refusals(function)
    assert "Lambda.TooManyRequestsException" in transfer.task_errors(), transfer.task_errors()
    assert_invariants(
        bank,
        transfer,
        source,
        destination,
        "10.00",
        opening,
        refund_refused=case.refund_refused,
        ledger_unreadable=case.ledger_unreadable,
    )
    if case.expect:
        assert transfer.status == case.expect, transfer.outcome
    if case.ledger_unreadable:
        assert transfer.outcome["errorCode"] == "OUTCOME_UNCONFIRMED", transfer.outcome
    elif case.refund_refused:
        assert transfer.outcome["errorCode"] == "REFUND_PENDING", transfer.outcome
