"""Bad input, every kind: each malformed event in tests/events/bad_events.json gets its exact answer, and
nothing is written, started, or even asked of AWS.

An entry starts from events/starter.json (with a fresh ContactId) and changes it: ``event`` replaces it
whole, ``set`` / ``delete`` change dotted paths, ``repeat`` sets a path to one character repeated (oversized
values without a megabyte of JSON in the file). ``handler`` is starter (default), status, results or
outcome_waiter.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from holdline.connect import MAX_ANSWER_BYTES
from holdline.dal import aws
from holdline.handlers import outcome_waiter, results, starter, status
from holdline_local.stack import LocalStack
from tests.conftest import load_event
from tests.faults import FaultyClients
from tests.helpers import executions

CATALOG: list[dict[str, Any]] = json.loads((Path(__file__).parents[1] / "events" / "bad_events.json").read_text())
HANDLERS = {
    "starter": starter.handler,
    "status": status.handler,
    "results": results.handler,
    "outcome_waiter": outcome_waiter.handler,
}
MISSING = object()


def _walk(event: dict[str, Any], path: str) -> tuple[dict[str, Any], str]:
    *parents, leaf = path.split(".")
    node = event
    for key in parents:
        node = node[key]
    return node, leaf


def build(entry: dict[str, Any]) -> Any:
    if "event" in entry:
        return entry["event"]
    event = load_event("starter.json")
    event["Details"]["ContactData"]["ContactId"] = str(uuid.uuid4())
    for path in entry.get("delete", []):
        node, leaf = _walk(event, path)
        del node[leaf]
    for path, value in entry.get("set", {}).items():
        node, leaf = _walk(event, path)
        node[leaf] = value
    for path, (char, times) in entry.get("repeat", {}).items():
        node, leaf = _walk(event, path)
        node[leaf] = char * times
    return event


def test_the_catalog_covers_every_kind() -> None:
    assert len(CATALOG) >= 40
    codes = {entry["expect"]["errorCode"] for entry in CATALOG}
    assert codes >= {
        "INVALID_EVENT",
        "INVALID_PARAMETER",
        "MISSING_PARAMETER",
        "INVALID_AMOUNT",
        "LIMIT_EXCEEDED",
        "UNSUPPORTED_CURRENCY",
        "SAME_ACCOUNT",
        "INVALID_ACCOUNT",
        "UNKNOWN_OPERATION",
        "NOT_FOUND",
    }
    oversized = [e for e in CATALOG if "oversized event" in e["name"]]
    assert oversized and len(json.dumps(build(oversized[0]))) > 128 * 1024


def _table_count(stack: LocalStack) -> int:
    return int(stack.client("dynamodb").scan(TableName="TrackerTable", Select="COUNT")["Count"])


@pytest.mark.parametrize("entry", CATALOG, ids=[entry["name"] for entry in CATALOG])
def test_bad_event_is_answered_exactly_and_changes_nothing(
    entry: dict[str, Any], stack: LocalStack, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    event = build(entry)
    rows, started = _table_count(stack), len(executions(stack))
    spy = FaultyClients(aws.client)
    monkeypatch.setattr(aws, "client", spy)

    answer = HANDLERS[entry.get("handler", "starter")](event, lambda_context)

    assert answer == entry["expect"]
    assert spy.calls == []  # refused before any AWS call: nothing written, started or read
    assert _table_count(stack) == rows and len(executions(stack)) == started
    assert len(json.dumps(answer).encode()) < MAX_ANSWER_BYTES
    text = json.dumps(answer)
    assert "00012345" not in text and "00067890" not in text and "5550123" not in text
