"""ConfigLookupFunction against a DynamoDB table on the local stack: the flow's opening lookup."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from holdline.handlers import config_lookup
from holdline_local.stack import LocalStack

REPO = Path(__file__).resolve().parents[2]
DIALED = "+18005550199"  # events/starter.json's SystemEndpoint


@pytest.fixture
def table(stack: LocalStack) -> Iterator[Any]:
    """The stack's ConfigTable (the only one the function's role may read), emptied so that tests choose
    exactly which items exist; its seed rows come back afterwards."""
    ddb = stack.client("dynamodb")
    name = "ConfigTable"
    seeded = ddb.scan(TableName=name)["Items"]

    def clear() -> None:
        for item in ddb.scan(TableName=name)["Items"]:
            ddb.delete_item(TableName=name, Key={"configKey": item["configKey"]})

    def put(key: str, **values: str) -> None:
        ddb.put_item(TableName=name, Item={"configKey": {"S": key}, **{k: {"S": v} for k, v in values.items()}})

    clear()
    yield put
    clear()
    for item in seeded:
        ddb.put_item(TableName=name, Item=item)


def test_dialed_number_item_wins(table: Any, connect_event: Any, call: Any) -> None:
    table("default", lineOfBusiness="Holdline Bank")
    table(DIALED, language="fr-CA", lineOfBusiness="Banque Holdline", holdPrompt="Merci de patienter.")
    answer = call(config_lookup.handler, connect_event())
    assert answer == {
        "language": "fr-CA",
        "lineOfBusiness": "Banque Holdline",
        "greeting": "Thank you for calling Banque Holdline.",
        "holdPrompt": "Merci de patienter.",
        "found": "true",
        "configKey": "dialed",
    }


def test_unknown_number_falls_back_to_the_default_item(table: Any, connect_event: Any, call: Any) -> None:
    table("default", lineOfBusiness="Holdline Bank", greeting="Hello from Holdline.")
    event = connect_event()
    event["Details"]["ContactData"]["SystemEndpoint"]["Address"] = "+18005550100"
    answer = call(config_lookup.handler, event)
    assert (answer["greeting"], answer["configKey"], answer["found"]) == ("Hello from Holdline.", "default", "true")


def test_flow_may_pass_the_number_itself(table: Any, connect_event: Any, call: Any) -> None:
    table("+442071234567", lineOfBusiness="Holdline UK", language="en-GB")
    answer = call(config_lookup.handler, connect_event({"dialedNumber": "+442071234567"}))
    assert (answer["language"], answer["lineOfBusiness"]) == ("en-GB", "Holdline UK")


def test_no_items_at_all_answers_built_in_defaults(table: Any, connect_event: Any, call: Any) -> None:
    answer = call(config_lookup.handler, connect_event())
    assert answer["found"] == "false" and answer["language"] == "en-US"
    assert answer["greeting"] == "Thank you for calling."


def test_unsafe_or_malformed_values_are_dropped_for_defaults(table: Any, connect_event: Any, call: Any) -> None:
    table(DIALED, language="english", greeting="<speak>Hi & welcome</speak>", holdPrompt="x" * 500)
    answer = call(config_lookup.handler, connect_event())
    assert answer["found"] == "true"
    assert (answer["language"], answer["greeting"]) == ("en-US", "Thank you for calling.")
    assert answer["holdPrompt"] == "Your transfer is in progress. Please stay on the line."


def test_a_table_it_cannot_read_answers_an_error_code_not_an_exception(connect_event: Any, call: Any) -> None:
    """A misconfigured table name: no such table, and none the function's role may read (AccessDenied)."""
    answer = call(config_lookup.handler, connect_event(), environment={"CONFIG_TABLE_NAME": "NoSuchTable"})
    assert answer["status"] == "ERROR" and answer["errorCode"] == "DEPENDENCY_ERROR"


def test_not_a_connect_event_is_rejected(call: Any) -> None:
    assert call(config_lookup.handler, {"hello": "world"})["errorCode"] == "INVALID_EVENT"


def test_handler_imports_without_the_dev_tooling() -> None:
    code = (
        "import sys, holdline.handlers.config_lookup; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('moto', 'holdline_local', 'requests', 'yaml')]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO / "functions", capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
