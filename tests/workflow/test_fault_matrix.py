"""Every fault at every leg, checked against the saga's invariants (tests/workflow/saga.py): at most one debit,
one credit and one refund per transfer; no tracker left RUNNING once its execution ended; and an exact outcome
(SUCCEEDED with both legs once, or FAILED with the debit refunded once or never made), REFUND_PENDING only where
the refund itself was made to fail for good or a credit landed on a transfer that failed after it.

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
