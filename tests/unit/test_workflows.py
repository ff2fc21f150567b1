"""The workflow registry and the state machines agree: every step a state machine records is one the
registry knows (for stepsTotal and the polling hint), and a finished workflow reports all its steps done."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from holdline.workflows import REGISTRY, Workflow

REPO = Path(__file__).resolve().parents[2]
DEFINITIONS = {"transfer": "transfer.asl.json", "followUp": "follow_up.asl.json"}


def _recorded(states: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for state in states.values():
        values = state.get("Parameters", {}).get("ExpressionAttributeValues", {})
        if state.get("Resource", "").endswith("dynamodb:updateItem"):
            found.append(values)
        for branch in state.get("Branches", []):
            found.extend(_recorded(branch["States"]))
    return found


def test_every_workflow_has_a_definition() -> None:
    assert set(REGISTRY) == set(DEFINITIONS)


@pytest.mark.parametrize("operation", sorted(DEFINITIONS))
def test_steps_match_the_state_machine(operation: str) -> None:
    workflow: Workflow = REGISTRY[operation]
    definition = json.loads((REPO / "statemachines" / DEFINITIONS[operation]).read_text())
    updates = _recorded(definition["States"])
    steps = {u[":step"]["S"] for u in updates if ":step" in u} - {"DONE"}
    assert steps == set(workflow.steps) | set(workflow.uncounted_steps)
    done = [u for u in updates if u.get(":step", {}).get("S") == "DONE" and ":done" in u]
    assert done and all(int(u[":done"]["N"]) == workflow.steps_total for u in done)
    for step in steps:
        assert workflow.expected_seconds(step) is not None
