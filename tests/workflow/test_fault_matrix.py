"""Every fault at every leg, checked against the saga's invariants (tests/workflow/saga.py):
at most one debit, one credit and one refund per transfer; a failed transfer has its debit refunded or says
REFUND_PENDING; no tracker left RUNNING once its execution ended; no money created or lost.

Each fault is one test; its legs run concurrently (each transfer has accounts of its own, so per-account
faults hit only it), which keeps the matrix at a few seconds per fault.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
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

FAULTS: dict[str, dict[str, Any]] = {
    "5xx-once": {"kind": FaultKind.ERROR_5XX, "times": 1},
    "5xx-always": {"kind": FaultKind.ERROR_5XX},
    "429-twice": {"kind": FaultKind.THROTTLE, "times": 2},
    "reset-once": {"kind": FaultKind.CONNECTION_RESET, "times": 1},
    "reset-always": {"kind": FaultKind.CONNECTION_RESET},
    "latency-past-function-timeout": {"kind": FaultKind.LATENCY, "times": 1, "seconds": PAST_THE_FUNCTION_TIMEOUT},
    "timeout-after-commit": {"kind": FaultKind.TIMEOUT_AFTER_COMMIT, "times": 1, "seconds": PAST_THE_FUNCTION_TIMEOUT},
    "slow-settlement": {"kind": FaultKind.SLOW_SETTLEMENT, "checks": 3},
    "half-the-requests-fail": {"kind": FaultKind.ERROR_5XX, "rate": 0.5},
}


@dataclass
class Case:
    leg: str
    source: str
    destination: str
    opening: dict[str, Decimal]
    tracker_id: str = ""


def _setup(bank: SandboxBank, leg: str, fault: dict[str, Any]) -> Case:
    source, destination = new_account(bank), new_account(bank, "0.00", "SAV")
    target = source if LEG_TARGET[leg] == "source" else destination
    bank.inject(leg=leg, account=target, **fault)
    if leg == "refund":
        # A refund only runs after a failure: make the credit fail for good, so the refund leg carries the fault.
        bank.inject(FaultKind.ERROR_5XX, leg="credit", account=destination)
    return Case(leg, source, destination, {source: bank.balance(source), destination: bank.balance(destination)})


@pytest.mark.parametrize("fault_name", list(FAULTS))
def test_fault_at_every_leg_keeps_the_invariants(stack: LocalStack, bank: SandboxBank, fault_name: str) -> None:
    fault = FAULTS[fault_name]
    cases = [_setup(bank, leg, fault) for leg in LEG_TARGET]
    for case in cases:
        case.tracker_id = start(stack, case.source, case.destination)

    with ThreadPoolExecutor(max_workers=len(cases)) as pool:
        transfers: list[Transfer] = list(pool.map(lambda c: finish(stack, c.tracker_id, timeout=120), cases))

    for case, transfer in zip(cases, transfers, strict=True):
        try:
            assert_invariants(bank, transfer, case.source, case.destination, "10.00", case.opening)
        except AssertionError as exc:
            raise AssertionError(f"{fault_name} at {case.leg}: {exc}; outcome {transfer.outcome}") from exc
        if fault.get("times") or fault["kind"] is FaultKind.SLOW_SETTLEMENT:
            # A fault that clears up must not cost the transfer (except the refund leg, which only runs after
            # the credit was made to fail).
            expected = "FAILED" if case.leg == "refund" else "SUCCEEDED"
            assert transfer.status == expected, f"{fault_name} at {case.leg}: {transfer.outcome}"
            if case.leg == "refund":
                assert transfer.outcome["refunded"] == "true", transfer.outcome
