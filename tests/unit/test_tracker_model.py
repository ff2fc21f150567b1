"""One model of the tracker row: the state machines, the workflow registry and the Python writers agree on its
status and step names, every Python write goes through holdline.dal.tracker_table, and no write moves a
status backwards."""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from holdline.dal import aws, tracker_table
from holdline.models.tracker import FINAL_STATUSES, TrackerRow, TrackerStatus, TrackerStep
from holdline.workflows import REGISTRY

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "functions" / "holdline"
MACHINES = sorted((REPO / "statemachines").glob("*.asl.json"))
DYNAMODB_WRITES = {"put_item", "update_item", "delete_item", "batch_write_item", "transact_write_items"}
_ASSIGNMENT = re.compile(r"(#?[A-Za-z_][A-Za-z0-9_]*)\s*=\s*(:[A-Za-z0-9_]+)")


# ---- the state machines' writes -------------------------------------------------------------------------------
def _states(states: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, state in states.items():
        yield name, state
        for branch in state.get("Branches", []):
            yield from _states(branch["States"])
        processor = state.get("ItemProcessor") or state.get("Iterator")
        if processor:
            yield from _states(processor["States"])


def _tracker_writes(definition: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every DynamoDB write task on the tracker table, with its request (JSONPath Parameters or JSONata
    Arguments)."""
    for name, state in _states(definition["States"]):
        resource = str(state.get("Resource", ""))
        if not resource.startswith("arn:aws:states:::dynamodb:") or resource.endswith(":getItem"):
            continue
        request = state.get("Parameters") or state.get("Arguments") or {}
        if request.get("TableName") == "${TrackerTableName}":
            yield name, request


def _literal(request: dict[str, Any], placeholder: str, where: str) -> str:
    value = request.get("ExpressionAttributeValues", {}).get(placeholder)
    assert isinstance(value, dict) and isinstance(value.get("S"), str), (
        f"{where}: {placeholder} must be a literal string, so its name can be checked against the model"
    )
    return str(value["S"])


def _assigned(request: dict[str, Any], expression: str, attribute: str, where: str) -> list[str]:
    """The literal values ``expression`` compares or sets ``attribute`` to (through its #name, if any)."""
    names = request.get("ExpressionAttributeNames", {})
    found = []
    for token, placeholder in _ASSIGNMENT.findall(request.get(expression, "")):
        if names.get(token, token) == attribute:
            found.append(_literal(request, placeholder, where))
    return found


def _asl_names(attribute: str) -> dict[str, set[str]]:
    """Each value a state machine writes to ``attribute`` (status or step), with the states that write it."""
    written: dict[str, set[str]] = {}
    for path in MACHINES:
        for state, request in _tracker_writes(json.loads(path.read_text())):
            for value in _assigned(request, "UpdateExpression", attribute, f"{path.name}:{state}"):
                written.setdefault(value, set()).add(f"{path.name}:{state}")
    return written


def test_the_state_machines_write_the_tracker() -> None:
    assert {path.name for path in MACHINES} >= {"transfer.asl.json", "follow_up.asl.json"}
    assert all(any(_tracker_writes(json.loads(path.read_text()))) for path in MACHINES)


def test_every_status_a_state_machine_writes_is_a_tracker_status() -> None:
    written = _asl_names("status")
    assert written, "no Record* task sets a status"
    unknown = {value: states for value, states in written.items() if value not in set(TrackerStatus)}
    assert not unknown, f"statuses missing from TrackerStatus: {unknown}"
    # A state machine only ends a row; RUNNING is the starter's (TrackerRow.new).
    assert set(written) == set(FINAL_STATUSES)


def test_every_step_a_state_machine_writes_is_a_tracker_step() -> None:
    written = _asl_names("step")
    unknown = {value: states for value, states in written.items() if value not in set(TrackerStep)}
    assert not unknown, f"steps missing from TrackerStep: {unknown}"
    # And the enum names nothing nobody writes: STARTED is the starter's, every other step a state machine's.
    assert set(written) | {TrackerStep.STARTED} == set(TrackerStep)


def test_a_state_machine_writes_only_a_running_row() -> None:
    """Forward only: every tracker write in the ASL requires RUNNING, so a final row is never rewritten (and
    never made RUNNING again: no state sets RUNNING at all)."""
    for path in MACHINES:
        for state, request in _tracker_writes(json.loads(path.read_text())):
            where = f"{path.name}:{state}"
            assert _assigned(request, "ConditionExpression", "status", where) == [TrackerStatus.RUNNING], where
            assert TrackerStatus.RUNNING not in _assigned(request, "UpdateExpression", "status", where), where


# ---- the workflow registry ------------------------------------------------------------------------------------
@pytest.mark.parametrize("operation", sorted(REGISTRY))
def test_the_registrys_steps_are_tracker_steps(operation: str) -> None:
    workflow = REGISTRY[operation]
    for step in [*workflow.steps, *workflow.uncounted_steps]:
        assert step in set(TrackerStep), f"{operation}: {step!r} is not a TrackerStep"
    assert not {TrackerStep.STARTED, TrackerStep.DONE} & {*workflow.steps, *workflow.uncounted_steps}


def test_the_registry_and_the_model_name_the_same_steps() -> None:
    registered = {step for workflow in REGISTRY.values() for step in [*workflow.steps, *workflow.uncounted_steps]}
    assert registered | {TrackerStep.STARTED, TrackerStep.DONE} == set(TrackerStep)


# ---- the model ------------------------------------------------------------------------------------------------
def _new_row() -> TrackerRow:
    return TrackerRow.new(
        tracker_id="transfer-0123",
        operation="transfer",
        steps_total=3,
        contact_id="contact-1",
        instance_arn="arn:aws:connect:us-east-1:123456789012:instance/x",
        request_id="req-1",
        request_fingerprint="f" * 64,
        request={"fromAccount": "1111", "toAccount": "2222", "amount": "12.50", "currency": "USD"},
        started_at=1_700_000_000.75,
        ttl_days=30,
    )


def test_a_new_row_is_the_item_the_starter_writes() -> None:
    assert _new_row().to_item() == {
        "trackerId": "transfer-0123",
        "operation": "transfer",
        "status": "RUNNING",
        "step": "STARTED",
        "stepsDone": 0,
        "stepsTotal": 3,
        "contactId": "contact-1",
        "instanceArn": "arn:aws:connect:us-east-1:123456789012:instance/x",
        "requestId": "req-1",
        "requestFingerprint": "f" * 64,
        "request": {"fromAccount": "1111", "toAccount": "2222", "amount": "12.50", "currency": "USD"},
        "executionName": "transfer-0123",
        "createdAt": 1_700_000_000,
        "expiresAt": 1_700_000_000 + 30 * 86400,
    }
    # Stored as plain strings (TypeSerializer serializes a str subclass as S, but nothing may depend on it).
    assert all(type(value) is str for value in (_new_row().to_item()["status"], _new_row().to_item()["step"]))


def test_a_row_read_back_is_the_row_written() -> None:
    row = _new_row()
    item = {key: Decimal(value) if isinstance(value, int) else value for key, value in row.to_item().items()}
    assert TrackerRow.from_item(item) == row


def test_a_final_row_read_back_keeps_every_attribute() -> None:
    item = {
        **_new_row().to_item(),
        "status": "FAILED",
        "step": "DONE",
        "stepsDone": Decimal(1),
        "refunded": True,
        "failureError": "BankRejected",
        "updatedAt": "2026-12-01T10:00:00.000Z",
        "someLaterAttribute": "kept",
    }
    row = TrackerRow.from_item(item)
    assert (row.status, row.step, row.steps_done, row.refunded) == (TrackerStatus.FAILED, TrackerStep.DONE, 1, True)
    assert row.status.is_final
    assert row.to_item() == {**item, "stepsDone": 1}


def test_a_status_no_writer_uses_is_refused() -> None:
    with pytest.raises(ValueError):
        TrackerRow.from_item({**_new_row().to_item(), "status": "PAUSED"})


# ---- the Python writers ---------------------------------------------------------------------------------------
def _modules() -> Iterator[tuple[str, ast.Module]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        yield str(path.relative_to(PACKAGE)), ast.parse(path.read_text(), filename=str(path))


def test_only_the_tracker_dal_addresses_the_tracker_table() -> None:
    """A module that could write the tracker table names it (the setting or its variable) or a DynamoDB write:
    outside dal/tracker_table.py (and config.py, which defines the setting) none may."""
    offenders = []
    for name, module in _modules():
        if name == "dal/tracker_table.py":
            continue
        for node in ast.walk(module):
            if isinstance(node, ast.Attribute) and node.attr == "tracker_table_name" and name != "config.py":
                offenders.append(f"{name}:{node.lineno} reads tracker_table_name")
            if isinstance(node, ast.Attribute) and node.attr in DYNAMODB_WRITES:
                offenders.append(f"{name}:{node.lineno} calls {node.attr}")
            if isinstance(node, ast.Constant) and node.value in {*DYNAMODB_WRITES, "TRACKER_TABLE_NAME"}:
                offenders.append(f"{name}:{node.lineno} names {node.value!r}")
    assert not offenders, "write the tracker table through holdline.dal.tracker_table:\n" + "\n".join(offenders)


@pytest.fixture
def dynamodb_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    """Every DynamoDB call the tracker DAL makes, answered with success."""
    made: list[tuple[str, dict[str, Any]]] = []

    def fake(service: str, operation: str, **request: Any) -> dict[str, Any]:
        assert service == "dynamodb"
        made.append((operation, request))
        return {}

    monkeypatch.setattr(aws, "call", fake)
    return made


def test_every_python_status_write_only_moves_forward(dynamodb_calls: list[tuple[str, dict[str, Any]]]) -> None:
    """The starter creates RUNNING only where no row is; failure handling ends only a RUNNING row."""
    tracker_table.create(_new_row())
    tracker_table.mark_failed("transfer-0123", "ExecutionAborted", "RECONCILER", execution_error="States.Aborted")
    tracker_table.mark_notified("transfer-0123", "event-1")
    (put, create), (update, failed), (_, notified) = dynamodb_calls
    assert (put, create["ConditionExpression"]) == ("put_item", "attribute_not_exists(trackerId)")
    assert create["Item"]["status"] == {"S": "RUNNING"} and create["Item"]["step"] == {"S": "STARTED"}
    assert update == "update_item"
    assert _assigned(failed, "ConditionExpression", "status", "mark_failed") == [TrackerStatus.RUNNING]
    assert _assigned(failed, "UpdateExpression", "status", "mark_failed") == [TrackerStatus.FAILED]
    assert _assigned(failed, "UpdateExpression", "step", "mark_failed") == [TrackerStep.DONE]
    assert not _assigned(notified, "UpdateExpression", "status", "mark_notified")
