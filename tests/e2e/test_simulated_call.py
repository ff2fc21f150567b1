"""Simulated Connect calls through the shipped flow, end to end against the local stack's real handlers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from holdline_local.cli import _endpoint_client, _lambda_invoker
from holdline_local.simulator import SimulatedCall, invoked_functions
from holdline_local.stack import LocalStack
from tests.conftest import load_event

REPO = Path(__file__).resolve().parents[2]


def test_make_demo_call_succeeds_from_the_command_line() -> None:
    """What `make demo` runs, in a fresh process: its own local stack, the shipped flow and event, exit 0."""
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
    assert report["outcome"] == "SUCCEEDED" and report["completed"] is True and report["ending"] == "DISCONNECTED"
    names = [s["name"] for s in report["steps"] if s["kind"] == "invoke"]
    assert names[:2] == ["ConfigLookupFunction", "StarterFunction"] and names[-1] == "ResultsFunction"
    assert names[2] == "OutcomeWaiterFunction" and "StatusFunction" not in names  # no fallback to polling
    assert all(s["duration_ms"] < s["limit_ms"] for s in report["steps"] if s["kind"] == "invoke")
    assert report["path"][0] == "Enable flow logs" and report["path"][-1] == "Hang up"


def test_demo_prints_a_readable_timeline() -> None:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "holdline"), "simulate"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "▶ StarterFunction" in result.stdout and "▷ OutcomeWaiterFunction" in result.stdout
    assert "♪ Play hold prompt while waiting" in result.stdout and "→ LambdaReturned" in result.stdout
    assert "Outcome: SUCCEEDED" in result.stdout and "Caller hears: Your transfer of 250.00 USD" in result.stdout
    assert "12345" not in result.stdout  # account numbers never shown (the starter answers with a tracker id)
    # Which clock each figure is on: the caller's (prompts in full) and this machine's (the saga's).
    assert "t = the caller's clock" in result.stdout and "real = this machine's clock" in result.stdout
    lines = [line for line in result.stdout.splitlines() if "▶" in line or "♪" in line]
    caller = [float(line.split("t=")[1].split("s")[0]) for line in lines]
    real = [float(line.split("real=")[1].split("s")[0]) for line in lines]
    assert caller == sorted(caller) and real == sorted(real)
    assert caller[-1] > real[-1]  # prompts play fast on this machine, in full for the caller
    # A fresh stack: the first call of a function starts its execution environment, and the timeline says so.
    assert "▶ ConfigLookupFunction" in lines[0] and "(cold start: Init " in lines[0]


@pytest.mark.parametrize(
    ("event", "outcome", "code", "ending"),
    [
        ("starter.json", "SUCCEEDED", "", "DISCONNECTED"),
        ("starter-insufficient-funds.json", "FAILED", "INSUFFICIENT_FUNDS", "QUEUED_FOR_AGENT"),
        ("starter-unknown-destination.json", "FAILED", "ACCOUNT_NOT_FOUND", "QUEUED_FOR_AGENT"),
        ("starter-invalid-amount.json", "REJECTED", "INVALID_AMOUNT", "QUEUED_FOR_AGENT"),
    ],
)
def test_simulated_outcomes(
    stack: LocalStack, event: str, outcome: str, code: str, ending: str, connect_event: Any
) -> None:
    call_event = connect_event(load_event(event)["Details"]["Parameters"])
    report = SimulatedCall(_lambda_invoker(_endpoint_client(stack.endpoint)), call_event, time_scale=0.01).run()
    assert (report.outcome, report.error_code, report.ending) == (outcome, code, ending)
    assert report.completed and report.error_branches == []
    # Every started transfer was waited for by the outcome waiter, never by the polling loop.
    assert ("OutcomeWaiterFunction" in invoked_functions(report.steps)) == (outcome != "REJECTED")
    assert "StatusFunction" not in invoked_functions(report.steps)
    assert "00000402" not in report.caller_hears
    # The branded greeting for the number dialed (the local stack's seeded ConfigTable row).
    assert next(s.name for s in report.steps if s.kind == "prompt").startswith("Welcome to Holdline Bank Premier")


def test_unknown_dialed_number_gets_the_default_line(stack: LocalStack, connect_event: Any) -> None:
    call_event = connect_event(load_event("starter.json")["Details"]["Parameters"])
    call_event["Details"]["ContactData"]["SystemEndpoint"]["Address"] = "+18005550100"
    report = SimulatedCall(_lambda_invoker(_endpoint_client(stack.endpoint)), call_event, time_scale=0.01).run()
    assert report.outcome == "SUCCEEDED"
    assert next(s.name for s in report.steps if s.kind == "prompt").startswith("Thank you for calling Holdline Bank.")
    assert invoked_functions(report.steps)[0] == "ConfigLookupFunction"


def test_the_polling_loop_still_serves_a_call_whose_outcome_waiter_is_refused(
    stack: LocalStack, connect_event: Any
) -> None:
    """The flow's fallback against the real functions: the outcome waiter cannot be invoked (a name Lambda does
    not know), so the call holds through the polling loop and still hears its outcome."""
    from holdline_local.flows import function_placeholders

    functions = {**function_placeholders(), "OutcomeWaiterFunctionArn": "NoSuchFunction"}
    call_event = connect_event(load_event("starter.json")["Details"]["Parameters"])
    invoke = _lambda_invoker(_endpoint_client(stack.endpoint))
    report = SimulatedCall(invoke, call_event, functions=functions, time_scale=0.01).run()
    assert (report.outcome, report.ending) == ("SUCCEEDED", "DISCONNECTED")
    assert report.error_branches == ["Wait for outcome: INVOKE_REFUSED"] and report.attributes["holdMode"] == "POLLING"
    assert "StatusFunction" in invoked_functions(report.steps)


def test_a_starter_that_times_out_after_starting_the_transfer_still_tells_the_caller_the_outcome(
    stack: LocalStack, connect_event: Any
) -> None:
    """Against the real functions: every visit of the starter's block takes longer than Connect waits (simulated
    latency on top of a run that really started the transfer), so the flow takes the Error branch twice; the
    lookup (the real status function, no tracker id) finds the transfer, and the caller holds for it and hears the
    real outcome. The money moved once."""
    from holdline.logic.starter import tracker_id_for
    from tests.helpers import executions

    call_event = connect_event(load_event("starter.json")["Details"]["Parameters"])
    contact = call_event["Details"]["ContactData"]["ContactId"]
    invoke = _lambda_invoker(_endpoint_client(stack.endpoint))
    report = SimulatedCall(
        invoke, call_event, time_scale=0.01, latency=lambda f: 6.5 if f == "StarterFunction" else 0.0
    ).run()
    assert (report.outcome, report.ending) == ("SUCCEEDED", "DISCONNECTED") and report.completed
    assert report.error_branches == ["Start transfer: TIMEOUT", "Start transfer: TIMEOUT"]
    tracker_id = tracker_id_for("transfer", contact, contact)
    assert report.attributes["trackerId"] == tracker_id
    assert invoked_functions(report.steps)[1:5] == [
        "StarterFunction",
        "StarterFunction",
        "StatusFunction",
        "OutcomeWaiterFunction",
    ]
    assert "is complete" in report.caller_hears
    assert [e["name"] for e in executions(stack, tracker_id)] == [tracker_id]
    assert stack.bank is not None and stack.bank.count(tracker_id, "debit") == 1


def test_a_starter_that_never_ran_is_told_as_not_started(stack: LocalStack, connect_event: Any) -> None:
    """The starter cannot be invoked at all (a name Lambda does not know): both visits take the Error branch, the
    real status function finds no transfer for this contact, and the caller hears that nothing was made."""
    from holdline_local.flows import function_placeholders

    functions = {**function_placeholders(), "StarterFunctionArn": "NoSuchFunction"}
    call_event = connect_event(load_event("starter.json")["Details"]["Parameters"])
    invoke = _lambda_invoker(_endpoint_client(stack.endpoint))
    report = SimulatedCall(invoke, call_event, functions=functions, time_scale=0.01).run()
    assert (report.outcome, report.ending) == ("NOT_STARTED", "QUEUED_FOR_AGENT")
    assert report.error_branches == ["Start transfer: INVOKE_REFUSED"] * 2
    assert "Your transfer has not been made." in report.caller_hears
