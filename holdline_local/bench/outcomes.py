"""What each benchmark scenario must end in, and the check that fails a run when a call is lost, stuck or
wrong. Pure functions over what the run observed, so the check itself is unit-tested
(tests/unit/test_bench_harness.py)."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any


@dataclass(frozen=True)
class Scenario:
    """A call the flow makes, using the sandbox bank's test accounts, and what it must end in."""

    name: str
    from_account: str
    to_account: str
    amount: str
    outcome: str  # the results answer's status
    error_code: str  # the results answer's errorCode ("" on success)
    # Ledger entries the transfer must leave at the bank, by payment type (the money, not the steps).
    ledger: Mapping[str, int] = field(default_factory=dict)

    def parameters(self) -> dict[str, str]:
        return {
            "fromAccount": self.from_account,
            "toAccount": self.to_account,
            "amount": self.amount,
            "currency": "USD",
        }

    def event(self) -> dict[str, Any]:
        """A new call (a fresh ContactId) asking for this transfer."""
        contact = str(uuid.uuid4())
        return {
            "Name": "ContactFlowEvent",
            "Details": {
                "ContactData": {"ContactId": contact, "InitialContactId": contact, "Attributes": {}},
                "Parameters": self.parameters(),
            },
        }


SUCCESS = Scenario("success", "CHK-00012345", "SAV-00067890", "1.00", "SUCCEEDED", "", {"debit": 1, "credit": 1})
# CHK-00000402 holds 5.00: a 25.00 debit is refused with 402, nothing moves.
INSUFFICIENT_FUNDS = Scenario(
    "insufficient_funds", "CHK-00000402", "SAV-00067890", "25.00", "FAILED", "INSUFFICIENT_FUNDS"
)
# CHK-00000404 does not exist: the saga's validation looks both accounts up first, so nothing moves.
UNKNOWN_DESTINATION = Scenario(
    "unknown_destination", "CHK-00012345", "CHK-00000404", "1.00", "FAILED", "ACCOUNT_NOT_FOUND"
)
SCENARIOS: tuple[Scenario, ...] = (SUCCESS, INSUFFICIENT_FUNDS, UNKNOWN_DESTINATION)


def mix(n: int, scenarios: Sequence[Scenario] = SCENARIOS) -> list[Scenario]:
    """N calls cycling through the scenarios, so every size has all of them in fixed proportions."""
    return [scenarios[i % len(scenarios)] for i in range(n)]


@dataclass
class CallResult:
    """One simulated call as the run saw it. ``outcome`` is empty when the call never came back (lost)."""

    scenario: Scenario
    outcome: str = ""
    error_code: str = ""
    tracker_id: str = ""
    #: The event the flow was started with (what the starter saw, and what the flow's lookup derives from).
    event: dict[str, Any] = field(default_factory=dict)
    caller_hears: str = ""
    #: Every flow block that took its Error branch ("<action>: <reason>"): the flow recovered, the stack did not
    #: keep up (a Connect-facing Lambda timed out, was throttled or failed).
    error_branches: list[str] = field(default_factory=list)
    polls: int = 0
    durations_ms: dict[str, list[float]] = field(default_factory=dict)


def check_calls(
    calls: Sequence[CallResult],
    *,
    executions: Mapping[str, str],
    ledger: Mapping[str, Counter[str]],
) -> list[str]:
    """Every problem with the run, empty when every transfer finished as its scenario implies, through the
    flow's normal path (no Error branch).

    ``executions`` maps execution name (the tracker id) to its status; ``ledger`` maps a transfer reference
    (the tracker id) to its ledger entries by payment type.
    """
    problems: list[str] = []
    seen: set[str] = set()
    for index, call in enumerate(calls):
        label = f"call {index} ({call.scenario.name})"
        if not call.outcome:
            problems.append(f"{label}: lost, the call never came back")
            continue
        if (call.outcome, call.error_code) != (call.scenario.outcome, call.scenario.error_code):
            problems.append(
                f"{label}: ended {call.outcome}/{call.error_code or '-'}, "
                f"expected {call.scenario.outcome}/{call.scenario.error_code or '-'}"
            )
        if call.error_branches:
            # The flow's recovery (retry, look the transfer up) may still tell the truth, but a stack that sends
            # callers down Error branches is past its capacity: the overload soak measures that regime.
            problems.append(f"{label}: took an Error branch ({'; '.join(call.error_branches[:2])})")
        if not call.tracker_id:
            problems.append(f"{label}: no tracker id")
            continue
        if call.tracker_id in seen:
            problems.append(f"{label}: tracker {call.tracker_id} shared with another call")
        seen.add(call.tracker_id)
        status = executions.get(call.tracker_id)
        if status is None:
            problems.append(f"{label}: no execution named {call.tracker_id} (transfer lost)")
        elif status == "RUNNING":
            problems.append(f"{label}: execution {call.tracker_id} still RUNNING (stuck)")
        elif status != "SUCCEEDED" and call.scenario.outcome == "SUCCEEDED":
            problems.append(f"{label}: execution ended {status}")
        entries = ledger.get(call.tracker_id, Counter())
        if Counter({k: v for k, v in entries.items() if v}) != Counter(dict(call.scenario.ledger)):
            problems.append(f"{label}: bank ledger {dict(entries)}, expected {dict(call.scenario.ledger)}")
    stray = set(executions) - seen
    if stray:
        problems.append(f"{len(stray)} execution(s) belong to no call")
    return problems


def expected_balances(opening: Mapping[str, Decimal], scenarios: Iterable[Scenario]) -> dict[str, Decimal]:
    """The balance every account must end with: only successful transfers move money for good."""
    balances = dict(opening)
    for scenario in scenarios:
        if scenario.outcome == "SUCCEEDED":
            amount = Decimal(scenario.amount)
            balances[scenario.from_account] = balances.get(scenario.from_account, Decimal(0)) - amount
            balances[scenario.to_account] = balances.get(scenario.to_account, Decimal(0)) + amount
    return balances


def check_balances(expected: Mapping[str, Decimal], actual: Mapping[str, Decimal]) -> list[str]:
    return [
        f"account {name}: balance {actual.get(name)}, expected {value}"
        for name, value in sorted(expected.items())
        if actual.get(name) != value
    ]


def ledger_by_reference(entries: Iterable[Any]) -> dict[str, Counter[str]]:
    """Group sandbox-bank ledger entries (``reference``, ``type``) by transfer reference."""
    grouped: dict[str, Counter[str]] = {}
    for entry in entries:
        grouped.setdefault(entry.reference, Counter())[entry.type] += 1
    return grouped
