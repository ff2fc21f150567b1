"""A leg's own AWS calls (its tracker read) fail as AWS calls do: timeouts, throttling, 5xx. Each must reach
the state machine as a typed transient error its Retry names (TrackerUnavailable), never as botocore's own
exception class, which no Retry matches and which ends the transfer TECHNICAL_ERROR.

The faults are injected around the handler's real clients (tests/faults.py), so the handler runs in this
process with its function's variables and role (the ``call`` fixture)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ReadTimeoutError

from holdline.dal import aws
from holdline.errors import TrackerUnavailable
from holdline.handlers import bank_legs
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
