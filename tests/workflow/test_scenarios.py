"""`holdline simulate --scenario NAME`: each scenario ends the simulated call with the outcome it promises."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from holdline_local import scenarios
from holdline_local.cli import _fresh_contact, _lambda_invoker
from holdline_local.sandbox_bank import SandboxBank
from holdline_local.simulator import SimulatedCall
from holdline_local.stack import LocalStack
from tests.conftest import load_event

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", list(scenarios.SCENARIOS))
def test_scenario_outcome(stack: LocalStack, bank: SandboxBank, name: str) -> None:
    scenario = scenarios.get(name)
    event = scenarios.apply(scenario, bank, _fresh_contact(load_event("starter.json")))
    report = SimulatedCall(_lambda_invoker(stack.client("lambda")), event, time_scale=0.01).run()
    assert report.completed
    assert (report.outcome, report.error_code or None) == (scenario.expect, scenario.error_code)


def test_unknown_scenario_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown scenario"):
        scenarios.get("meteor-strike")


def test_cli_runs_a_scenario() -> None:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "holdline"), "simulate", "--json", "--scenario", "insufficient-funds"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert report["outcome"] == "FAILED" and report["error_code"] == "INSUFFICIENT_FUNDS"
