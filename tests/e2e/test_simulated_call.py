"""A simulated Connect call, end to end, and the Connect rules the simulator applies."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from holdline_local.cli import _lambda_invoker
from holdline_local.simulator import SimulatedCall
from holdline_local.stack import LocalStack
from tests.conftest import load_event

REPO = Path(__file__).resolve().parents[2]


def test_make_demo_call_succeeds_from_the_command_line() -> None:
    """What `make demo` runs, in a fresh process: its own local stack, the shipped event, exit 0."""
    result = subprocess.run(
        [str(Path(sys.executable).parent / "holdline"), "simulate", "--json", "--expect", "SUCCEEDED"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert report["outcome"] == "SUCCEEDED" and report["completed"] is True
    names = [s["name"] for s in report["steps"] if s["kind"] == "invoke"]
    assert names[0] == "StarterFunction" and names[-1] == "ResultsFunction"
    assert "StatusFunction" in names
    assert all(s["duration_ms"] < 8000 for s in report["steps"] if s["kind"] == "invoke")


@pytest.mark.parametrize(
    ("event", "outcome", "code"),
    [
        ("starter-insufficient-funds.json", "FAILED", "INSUFFICIENT_FUNDS"),
        ("starter-unknown-destination.json", "FAILED", "ACCOUNT_NOT_FOUND"),
        ("starter-invalid-amount.json", "REJECTED", "INVALID_AMOUNT"),
    ],
)
def test_simulated_outcomes(stack: LocalStack, event: str, outcome: str, code: str, connect_event: Any) -> None:
    call_event = connect_event(load_event(event)["Details"]["Parameters"])
    report = SimulatedCall(_lambda_invoker(stack.client("lambda")), call_event, time_scale=0.01).run()
    assert (report.outcome, report.error_code) == (outcome, code)
    assert report.completed
    assert "00000402" not in report.caller_hears


def _fake(answers: Mapping[str, Any], error: str | None = None) -> Any:
    def invoke(function: str, event: Mapping[str, Any]) -> tuple[Any, str | None]:
        return answers[function], error if function == "StatusFunction" else None

    return invoke


STARTED = {"status": "STARTED", "trackerId": "t-1", "nextPollSeconds": "1"}


@pytest.mark.parametrize(
    ("status_answer", "error", "reason"),
    [
        ({"status": "RUNNING", "nested": {"a": "b"}}, None, "INVALID_RESPONSE"),
        ({"status": "RUNNING", "stepsDone": 1}, None, "INVALID_RESPONSE"),
        ({"status": "x" * (33 * 1024)}, None, "RESPONSE_TOO_LARGE"),
        ({"errorType": "KeyError"}, "Unhandled", "LAMBDA_EXCEPTION"),
    ],
)
def test_connect_rules_take_the_error_branch(status_answer: Any, error: str | None, reason: str) -> None:
    event = load_event("starter.json")
    report = SimulatedCall(_fake({"StarterFunction": STARTED, "StatusFunction": status_answer}, error), event).run()
    assert report.outcome == "ERROR_BRANCH" and report.error_code == reason
    assert not report.completed


def test_slow_lambda_takes_the_error_branch() -> None:
    event = load_event("starter.json")
    call = SimulatedCall(_fake({"StarterFunction": STARTED}), event, block_timeout=0.001)
    original = call._invoke

    def slow(function: str, e: Mapping[str, Any]) -> tuple[Any, str | None]:
        import time

        time.sleep(0.01)
        return original(function, e)

    call._invoke = slow
    report = call.run()
    assert (report.outcome, report.error_code) == ("ERROR_BRANCH", "TIMEOUT")


def test_hold_guard_stops_polling() -> None:
    running = {"status": "RUNNING", "keepWaiting": "false", "holdExceeded": "true"}
    report = SimulatedCall(
        _fake({"StarterFunction": STARTED, "StatusFunction": running}), load_event("starter.json")
    ).run()
    assert report.outcome == "HOLD_EXCEEDED"
