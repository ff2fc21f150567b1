"""Named fault scenarios for ``holdline simulate --scenario NAME``: the interesting outcomes of a transfer,
to watch end to end. A scenario picks the accounts of the call and configures the sandbox bank's fault
injector (and, where a task must really time out, the local stack's task timeout scale)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from holdline_local.sandbox_bank import FaultKind, SandboxBank

SOURCE = "CHK-00012345"
DESTINATION = "SAV-00067890"


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    expect: str  # the outcome the call should end with
    error_code: str | None = None
    parameters: Mapping[str, str] = field(default_factory=dict)  # overrides of the event's Parameters
    faults: tuple[Mapping[str, Any], ...] = ()  # keyword arguments of SandboxBank.inject
    #: Functions' Timeout and tasks' TimeoutSeconds are scaled together by this (1.0: as deployed).
    timeout_scale: float = 1.0


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("success", "a transfer that goes through", "SUCCEEDED"),
        Scenario(
            "insufficient-funds",
            "the source has 5.00: the debit is refused at once, nothing moves",
            "FAILED",
            "INSUFFICIENT_FUNDS",
            {"fromAccount": "CHK-00000402", "amount": "250.00"},
        ),
        Scenario(
            "bank-down",
            "every debit gets 503: retried with backoff and jitter, then failed; nothing to refund",
            "FAILED",
            "BANK_UNAVAILABLE",
            faults=({"kind": FaultKind.ERROR_5XX, "leg": "debit", "account": SOURCE},),
        ),
        Scenario(
            "timeout-after-commit",
            "the bank debits, then answers 2 s late, after the Debit function's Timeout (8 s, scaled to 0.8 s): "
            "Lambda stops it (Sandbox.Timedout); the retry looks the debit up by its key: one debit, and the "
            "transfer succeeds",
            "SUCCEEDED",
            faults=(
                {"kind": FaultKind.TIMEOUT_AFTER_COMMIT, "leg": "debit", "account": SOURCE, "times": 1, "seconds": 2},
            ),
            timeout_scale=0.1,
        ),
        Scenario(
            "slow-settlement",
            "the debit and the credit stay PENDING for a few checks before they settle",
            "SUCCEEDED",
            faults=(
                {"kind": FaultKind.SLOW_SETTLEMENT, "leg": "debit", "account": SOURCE, "checks": 3},
                {"kind": FaultKind.SLOW_SETTLEMENT, "leg": "credit", "account": DESTINATION, "checks": 2},
            ),
        ),
        Scenario(
            "refund-pending",
            "the credit keeps failing and so does the refund: FAILED, REFUND_PENDING (a person must act)",
            "FAILED",
            "REFUND_PENDING",
            faults=(
                {"kind": FaultKind.ERROR_5XX, "leg": "credit", "account": DESTINATION},
                {"kind": FaultKind.ERROR_5XX, "leg": "refund", "account": SOURCE},
            ),
        ),
    )
}


def get(name: str) -> Scenario:
    try:
        return SCENARIOS[name]
    except KeyError:
        raise ValueError(f"unknown scenario {name!r}; choose from {', '.join(SCENARIOS)}") from None


def apply(scenario: Scenario, bank: SandboxBank, event: dict[str, Any]) -> dict[str, Any]:
    """Configure the bank (and the timeout scale) for the scenario; return the event with its accounts."""
    from holdline_local import moto_adapter  # heavy (moto): only when a scenario is really applied

    bank.clear_faults()
    for fault in scenario.faults:
        bank.inject(**fault)
    moto_adapter.set_timeout_scale(scenario.timeout_scale)
    parameters = event.setdefault("Details", {}).setdefault("Parameters", {})
    parameters.update({"fromAccount": SOURCE, "toAccount": DESTINATION, **scenario.parameters})
    return event
