"""A leg's own AWS calls (its tracker read) fail as AWS calls do: timeouts, throttling, 5xx. Each must reach
the state machine as a typed transient error its Retry names (TrackerUnavailable), never as botocore's own
exception class, which no Retry matches and which ends the transfer TECHNICAL_ERROR.

The faults are injected around the handler's real clients (tests/faults.py), so the handler runs in this
process with its function's variables and role (the ``call`` fixture). Below, the bank client within a leg's
budget: a call cut at the budget, none started without one, a Retry-After waited out only when it fits."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ReadTimeoutError

from holdline.config import Settings
from holdline.dal import aws, bank_api
from holdline.errors import BankThrottled, BankTimeout, LegOutOfTime, TrackerUnavailable
from holdline.handlers import bank_legs
from holdline_local.sandbox_bank import FaultKind, SandboxBank
from holdline_local.stack import LocalStack
from tests.conftest import Call
from tests.faults import THROTTLE, FaultyClients, error
from tests.workflow.saga import new_account, start

ASL = Path(__file__).resolve().parents[2] / "statemachines" / "transfer.asl.json"


def _read_timeout(real: Any, operation: str) -> Any:
    raise ReadTimeoutError(endpoint_url="http://local")


LEGS = {
    "validate": bank_legs.validate,
    "fraud_check": bank_legs.fraud_check,
    "limit_check": bank_legs.limit_check,
    "debit": bank_legs.debit,
    "credit": bank_legs.credit,
    "refund": bank_legs.refund,
}


@pytest.mark.parametrize(
    "fault", [THROTTLE, error("InternalServerError", 500), _read_timeout], ids=["429", "5xx", "timeout"]
)
@pytest.mark.parametrize("leg", list(LEGS))
def test_a_legs_tracker_read_failure_is_typed_and_transient(
    stack: LocalStack, call: Call, monkeypatch: pytest.MonkeyPatch, leg: str, fault: Any
) -> None:
    assert stack.bank is not None
    source, destination = new_account(stack.bank), new_account(stack.bank, "0.00", "SAV")
    tracker_id = start(stack, source, destination)
    faults = FaultyClients(aws.client).always_on("dynamodb", "get_item", fault)
    monkeypatch.setattr(aws, "client", faults)
    with pytest.raises(TrackerUnavailable):
        call(LEGS[leg], {"trackerId": tracker_id, "executionName": tracker_id, "retryCount": 0})
    assert faults.count("dynamodb", "get_item") >= 1


def test_every_lambda_task_retries_the_legs_transient_errors() -> None:
    definition = json.loads(ASL.read_text())

    def tasks(states: dict[str, Any]) -> dict[str, Any]:
        found = {}
        for name, state in states.items():
            if state["Type"] == "Task" and state["Resource"].endswith(":lambda:invoke"):
                found[name] = state
            for branch in state.get("Branches", []):
                found.update(tasks(branch["States"]))
        return found

    for name, state in tasks(definition["States"]).items():
        retried = set().union(*(set(r["ErrorEquals"]) for r in state["Retry"]))
        missing = {"TrackerUnavailable", "LegOutOfTime", "PaymentInFlight", "BankTimeout"} - retried
        assert not missing, f"{name}: no Retry names {sorted(missing)}"


# ---- the bank client within a leg's budget (a sandbox bank of its own, real HTTP) -------------------------------


@pytest.fixture
def own_bank(monkeypatch: pytest.MonkeyPatch) -> Iterator[SandboxBank]:
    with SandboxBank(time_scale=0.01) as sandbox:
        settings = Settings(bank_api_url=sandbox.url, bank_timeout_seconds=5.0)
        monkeypatch.setattr(bank_api, "get_settings", lambda: settings)
        yield sandbox


def test_a_slow_bank_call_ends_within_the_budget(own_bank: SandboxBank) -> None:
    own_bank.inject(FaultKind.LATENCY, leg="account", seconds=1.5)
    started = time.monotonic()
    with bank_api.budget(0.4), pytest.raises(BankTimeout):
        bank_api.get_account("CHK-00012345")
    assert time.monotonic() - started < 0.9  # the budget, not the configured 5 s


def test_no_call_starts_without_budget_left(own_bank: SandboxBank) -> None:
    with bank_api.budget(bank_api.MIN_CALL_SECONDS / 2), pytest.raises(LegOutOfTime):
        bank_api.get_account("CHK-00012345")
    assert own_bank.requests_seen() == 0


def test_retry_after_is_waited_out_when_it_fits(own_bank: SandboxBank) -> None:
    own_bank.inject(FaultKind.THROTTLE, leg="account", times=1, retry_after=1)
    with bank_api.budget(3.0):
        assert bank_api.get_account("CHK-00012345")["account"] == "CHK-00012345"
    first, second = own_bank.request_times("account")
    assert 1.0 <= second - first <= 1.0 * (1 + bank_api.RETRY_AFTER_JITTER) + 0.3


def test_retry_after_that_does_not_fit_raises_at_once(own_bank: SandboxBank) -> None:
    own_bank.inject(FaultKind.THROTTLE, leg="account", times=1, retry_after=2)
    started = time.monotonic()
    with bank_api.budget(1.5), pytest.raises(BankThrottled) as raised:
        bank_api.get_account("CHK-00012345")
    assert raised.value.retry_after == 2 and time.monotonic() - started < 0.5
    assert own_bank.requests_seen("account") == 1
