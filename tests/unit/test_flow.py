"""The shipped Connect flow: Connect's rules (static and at run time) and every path a caller can take.

The functions here are fakes (answers chosen per test) so that each branch of the flow is reached on purpose;
tests/e2e/test_simulated_call.py drives the same flow against the real handlers on the local stack.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from holdline_local.flows import FLOW_PATH, function_placeholders, load_flow, template_flow
from holdline_local.simulator import FlowRuleViolation, SimulatedCall, check_flow, invoked_functions
from tests.conftest import load_event

FLOW = load_flow()

CONFIG = {"language": "en-US", "greeting": "Welcome to Test Bank.", "holdPrompt": "Still working.", "found": "true"}
STARTED = {"status": "STARTED", "trackerId": "transfer-1", "nextPollSeconds": "3"}
RUNNING = {"status": "RUNNING", "step": "DEBITING", "keepWaiting": "true", "nextPollSeconds": "3"}
DONE = {"status": "SUCCEEDED", "step": "DONE", "keepWaiting": "false"}
SUCCEEDED = {"status": "SUCCEEDED", "confirmationNumber": "HL1", "amount": "250.00", "currency": "USD"}


def _action(flow: dict[str, Any], name: str) -> dict[str, Any]:
    return next(a for a in flow["Actions"] if a["Identifier"] == name)


def _edited(edit: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    flow = copy.deepcopy(FLOW)
    edit(flow)
    return flow


class Functions:
    """Fake functions: each name answers from a list (the last answer repeats); records every event."""

    def __init__(self, **answers: Any) -> None:
        defaults: dict[str, Any] = {
            "ConfigLookupFunction": [CONFIG],
            "StarterFunction": [STARTED],
            "StatusFunction": [RUNNING, DONE],
            "ResultsFunction": [SUCCEEDED],
        }
        defaults.update(answers)
        self.answers = {name: list(value) if isinstance(value, list) else [value] for name, value in defaults.items()}
        self.events: list[tuple[str, Mapping[str, Any]]] = []

    def __call__(self, function: str, event: Mapping[str, Any]) -> tuple[Any, str | None]:
        self.events.append((function, event))
        queue = self.answers[function]
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(answer, Exception):
            return {"errorType": type(answer).__name__, "errorMessage": str(answer)}, "Unhandled"
        return answer, None


def call(functions: Functions, **options: Any) -> Any:
    options.setdefault("time_scale", 0)
    return SimulatedCall(functions, load_event("starter.json"), **options).run()


# ---- the shipped flow and the template ------------------------------------------------------------------
def test_shipped_flow_keeps_every_rule() -> None:
    assert check_flow(FLOW) == []


def test_template_deploys_exactly_the_shipped_flow() -> None:
    deployed, variables = template_flow()
    assert deployed == FLOW, "run `make flow-sync` after editing flows/transfer-flow.json"
    # Every function placeholder in the flow is substituted with a function of this template, and back.
    used = {a["Parameters"]["LambdaFunctionARN"] for a in FLOW["Actions"] if a["Type"] == "InvokeLambdaFunction"}
    assert used == {f"${{{name}}}" for name in function_placeholders()}
    assert set(function_placeholders().values()) == {
        "ConfigLookupFunction",
        "StarterFunction",
        "StatusFunction",
        "ResultsFunction",
    }
    assert set(variables) == set(function_placeholders())  # the queue ARN comes from the parameter itself
    assert "${ConnectFallbackQueueArn}" in FLOW_PATH.read_text()


def test_every_lambda_block_leaves_headroom_under_connects_limit() -> None:
    from holdline_local.template import read_stack

    functions = read_stack().functions
    for action in FLOW["Actions"]:
        if action["Type"] != "InvokeLambdaFunction":
            continue
        placeholder = action["Parameters"]["LambdaFunctionARN"][2:-1]
        block = int(action["Parameters"]["InvocationTimeLimitSeconds"])
        assert block <= 6, action["Identifier"]  # Connect allows 8; its retries need time inside the block
        assert functions[function_placeholders()[placeholder]].timeout <= block, action["Identifier"]


# ---- a flow edited so that it breaks a rule is refused -------------------------------------------------
def _set_timeout(value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda f: _action(f, "Start transfer")["Parameters"].__setitem__("InvocationTimeLimitSeconds", value)


def _drop_errors(name: str) -> Callable[[dict[str, Any]], None]:
    return lambda f: _action(f, name)["Transitions"].pop("Errors")


def _retarget(name: str, error_type: str, target: str) -> Callable[[dict[str, Any]], None]:
    def edit(flow: dict[str, Any]) -> None:
        for error in _action(flow, name)["Transitions"]["Errors"]:
            if error["ErrorType"] == error_type:
                error["NextAction"] = target

    return edit


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (_set_timeout("9"), "InvocationTimeLimitSeconds '9'"),
        (_set_timeout("0"), "InvocationTimeLimitSeconds '0'"),
        (_set_timeout("2.5"), "InvocationTimeLimitSeconds '2.5'"),
        (
            lambda f: _action(f, "Check status")["Parameters"]["ResponseValidation"].__setitem__(
                "ResponseType", "JSON"
            ),
            "STRING_MAP",
        ),
        (
            lambda f: _action(f, "Read result")["Parameters"].__setitem__("InvocationType", "ASYNCHRONOUS"),
            "SYNCHRONOUS",
        ),
        (_drop_errors("Start transfer"), "Start transfer: no NoMatchingError branch"),
        (_drop_errors("Transfer to agent"), "Transfer to agent: no NoMatchingError branch"),
        (_drop_errors("Check start"), "Check start: no NoMatchingCondition branch"),
        # status answers "done" and results is invoked at once, with no prompt between the two invocations
        (_retarget("Held too long", "NoMatchingCondition", "Read result"), "Check status -> Read result"),
        # a prompt that fails has not played: its Error branch does not break the chain
        (_retarget("Greet caller", "NoMatchingError", "Start transfer"), "two Lambda invocations with no prompt"),
        (_retarget("Start transfer", "NoMatchingError", "Hang up"), "Start transfer: its Error branch ends the call"),
        (_retarget("Check status", "NoMatchingError", "Say goodbye"), "Check status: its Error branch ends the call"),
        (lambda f: _action(f, "Keep tracker id")["Transitions"].__setitem__("NextAction", "Nowhere"), "missing action"),
        (lambda f: f["Actions"].append({"Identifier": "Orphan", "Type": "DisconnectParticipant"}), "Orphan: unreach"),
        (lambda f: _action(f, "Tell refund").__setitem__("Type", "PlayMusic"), "not one the simulator knows"),
        (lambda f: f.__setitem__("StartAction", "Missing"), "StartAction"),
    ],
)
def test_an_edited_flow_that_breaks_a_rule_is_refused(edit: Callable[[dict[str, Any]], None], expected: str) -> None:
    flow = _edited(edit)
    problems = check_flow(flow)
    assert any(expected in problem for problem in problems), problems
    with pytest.raises(FlowRuleViolation):
        SimulatedCall(Functions(), load_event("starter.json"), flow=flow)


def test_the_cli_refuses_a_broken_flow_file(tmp_path: Any) -> None:
    from holdline_local.cli import main

    broken = tmp_path / "flow.json"
    broken.write_text(json.dumps(_edited(_set_timeout("9"))))
    assert main(["simulate", "--flow", str(broken), "--endpoint", "http://127.0.0.1:9"]) == 2


# ---- every path a caller can take ------------------------------------------------------------------------
def test_success_path() -> None:
    functions = Functions()
    report = call(functions)
    assert (report.outcome, report.ending, report.error_branches) == ("SUCCEEDED", "DISCONNECTED", [])
    assert invoked_functions(report.steps) == [
        "ConfigLookupFunction",
        "StarterFunction",
        "StatusFunction",
        "StatusFunction",
        "ResultsFunction",
    ]
    assert report.tracker_id == "transfer-1" and report.attributes["confirmationNumber"] == "HL1"
    assert "250.00 USD is complete" in report.caller_hears and "HL1" in report.caller_hears
    prompts = [s.name for s in report.steps if s.kind == "prompt"]
    assert prompts[0].startswith("Welcome to Test Bank.") and prompts[1] == "Still working."
    # What the flow passes: the caller's request from contact attributes; the tracker id on every poll.
    starter_event = next(e for f, e in functions.events if f == "StarterFunction")
    assert starter_event["Details"]["Parameters"] == {
        "fromAccount": "CHK-00012345",
        "toAccount": "SAV-00067890",
        "amount": "250.00",
        "currency": "USD",
    }
    polls = [e for f, e in functions.events if f in {"StatusFunction", "ResultsFunction"}]
    assert all(e["Details"]["Parameters"] == {"trackerId": "transfer-1"} for e in polls)
    assert all(e["Details"]["ContactData"]["Attributes"]["trackerId"] == "transfer-1" for e in polls)
    assert report.attributes["language"] == "en-US"


@pytest.mark.parametrize(
    "config_answer",
    [RuntimeError("config table throttled"), {"found": "false"}, {"greeting": {"nested": "map"}}],
    ids=["lookup-raises", "answer-without-values", "non-flat-answer"],
)
def test_config_lookup_failure_falls_back_to_default_greeting(config_answer: Any) -> None:
    report = call(Functions(ConfigLookupFunction=config_answer))
    assert report.outcome == "SUCCEEDED" and report.completed
    greeting = next(s.name for s in report.steps if s.kind == "prompt")
    assert greeting.startswith("Thank you for calling.")
    assert report.attributes["language"] == "en-US"
    assert len(report.error_branches) == 1


def test_rejected_request_is_told_and_offered_an_agent() -> None:
    rejected = {"status": "REJECTED", "errorCode": "INVALID_AMOUNT", "errorMessage": "That amount is not valid."}
    report = call(Functions(StarterFunction=rejected))
    assert (report.outcome, report.error_code, report.ending) == ("REJECTED", "INVALID_AMOUNT", "QUEUED_FOR_AGENT")
    assert report.caller_hears.startswith("That amount is not valid.")
    assert invoked_functions(report.steps) == ["ConfigLookupFunction", "StarterFunction"]


def test_starter_error_answer_goes_to_an_agent() -> None:
    error = {"status": "ERROR", "errorCode": "THROTTLED", "retryable": "true", "errorMessage": "Busy."}
    report = call(Functions(StarterFunction=error))
    assert (report.outcome, report.error_code, report.ending) == ("ERROR", "THROTTLED", "QUEUED_FOR_AGENT")
    assert not report.completed


def test_connect_retries_a_failing_starter_within_the_block() -> None:
    functions = Functions(StarterFunction=[RuntimeError("cold"), RuntimeError("again"), STARTED])
    report = call(functions)
    assert report.outcome == "SUCCEEDED"
    starter_step = next(s for s in report.steps if s.name == "StarterFunction")
    assert starter_step.attempts == 3
    # Every attempt carries the same contact: that is why the starter must be idempotent.
    ids = {e["Details"]["ContactData"]["ContactId"] for f, e in functions.events if f == "StarterFunction"}
    assert len(ids) == 1


def test_starter_failing_every_retry_takes_the_error_branch_to_an_agent() -> None:
    report = call(Functions(StarterFunction=RuntimeError("down")))
    assert (report.outcome, report.error_code, report.ending) == (
        "ERROR_BRANCH",
        "LAMBDA_EXCEPTION",
        "QUEUED_FOR_AGENT",
    )
    assert next(s for s in report.steps if s.name == "StarterFunction").attempts == 4
    assert "Let me connect you to an agent." in report.caller_hears


def test_slow_starter_times_out_at_the_blocks_own_limit() -> None:
    report = call(Functions(), latency=lambda f: 6.5 if f == "StarterFunction" else 0.0)
    assert (report.outcome, report.error_code) == ("ERROR_BRANCH", "TIMEOUT")
    assert report.error_branches == ["Start transfer: TIMEOUT"]


@pytest.mark.parametrize(
    ("status_answer", "reason"),
    [
        ({"status": "RUNNING", "nested": {"a": "b"}}, "INVALID_RESPONSE"),
        ({"status": "RUNNING", "stepsDone": 1}, "INVALID_RESPONSE"),
        (["not", "a", "map"], "INVALID_RESPONSE"),
        ({"status": "x" * (33 * 1024)}, "RESPONSE_TOO_LARGE"),
        (KeyError("trackerId"), "LAMBDA_EXCEPTION"),
    ],
)
def test_connect_rules_take_the_error_branch(status_answer: Any, reason: str) -> None:
    report = call(Functions(StatusFunction=status_answer))
    assert (report.outcome, report.error_code, report.ending) == ("ERROR_BRANCH", reason, "QUEUED_FOR_AGENT")
    assert not report.completed
    assert "ResultsFunction" not in invoked_functions(report.steps)


def test_unexpected_poll_answer_goes_to_an_agent() -> None:
    report = call(Functions(StatusFunction={"status": "NOT_FOUND", "keepWaiting": "maybe"}))
    assert (report.outcome, report.ending) == ("ERROR_BRANCH", "QUEUED_FOR_AGENT")


def test_failed_transfer_with_refund() -> None:
    failed = {
        "status": "FAILED",
        "errorCode": "INSUFFICIENT_FUNDS",
        "errorMessage": "There is not enough money in that account.",
        "refunded": "true",
    }
    report = call(Functions(ResultsFunction=failed))
    assert (report.outcome, report.error_code, report.ending) == ("FAILED", "INSUFFICIENT_FUNDS", "QUEUED_FOR_AGENT")
    assert report.completed
    assert "There is not enough money" in report.caller_hears
    assert "The money has been returned to your account." in report.caller_hears


def test_failed_transfer_without_refund_says_nothing_about_one() -> None:
    failed = {
        "status": "FAILED",
        "errorCode": "ACCOUNT_NOT_FOUND",
        "errorMessage": "No such account.",
        "refunded": "false",
    }
    report = call(Functions(ResultsFunction=failed))
    assert report.outcome == "FAILED" and "returned" not in report.caller_hears


def test_results_not_final_goes_to_an_agent() -> None:
    report = call(Functions(ResultsFunction={"status": "NOT_FOUND", "errorCode": "NOT_FOUND"}))
    assert (report.outcome, report.ending) == ("ERROR_BRANCH", "QUEUED_FOR_AGENT")


def test_hold_exceeded_by_status_offers_a_callback() -> None:
    exceeded = {"status": "RUNNING", "keepWaiting": "false", "holdExceeded": "true"}
    report = call(Functions(StatusFunction=exceeded))
    assert (report.outcome, report.ending) == ("HOLD_EXCEEDED", "CALLBACK_CREATED")
    assert "ResultsFunction" not in invoked_functions(report.steps)
    assert "call you back" in report.caller_hears


def test_the_flows_own_loop_guard_ends_an_endless_hold() -> None:
    report = call(Functions(StatusFunction=RUNNING))
    assert (report.outcome, report.ending) == ("HOLD_EXCEEDED", "CALLBACK_CREATED")
    assert invoked_functions(report.steps).count("StatusFunction") == 100  # LoopCount
    # Each poll came after a hold prompt with its 3 s pause: the chain limit never came close.
    assert max(s.at for s in report.steps) > 100 * 3
    assert not report.error_branches


def test_full_queue_offers_a_callback_instead() -> None:
    report = call(Functions(StarterFunction=RuntimeError("down")), queue_at_capacity=True)
    assert (report.outcome, report.ending) == ("ERROR_BRANCH", "CALLBACK_CREATED")
    assert report.path[-4:] == ["Set callback number", "Create callback", "Confirm callback", "Hang up"]


def test_no_callback_number_ends_politely() -> None:
    event = load_event("starter.json")
    event["Details"]["ContactData"]["CustomerEndpoint"] = {"Address": "anonymous", "Type": "TELEPHONE_NUMBER"}
    exceeded = {"status": "RUNNING", "keepWaiting": "false", "holdExceeded": "true"}
    report = SimulatedCall(Functions(StatusFunction=exceeded), event, time_scale=0).run()
    assert (report.outcome, report.ending) == ("HOLD_EXCEEDED", "DISCONNECTED")
    assert report.caller_hears.endswith("Please call again later.")


def test_chain_limit_applies_at_run_time_to_an_unchecked_flow() -> None:
    """Three Lambda blocks in a row (the static check refuses this): the third passes ~20 s of silence."""

    def block(name: str, function: str, following: str) -> dict[str, Any]:
        lam = copy.deepcopy(_action(FLOW, "Check status"))
        lam["Identifier"] = name
        lam["Parameters"]["LambdaFunctionARN"] = f"${{{function}}}"
        lam["Parameters"]["InvocationTimeLimitSeconds"] = "8"
        lam["Transitions"] = {
            "NextAction": following,
            "Errors": [{"ErrorType": "NoMatchingError", "NextAction": "End"}],
        }
        return lam

    flow = {
        "Version": "2019-10-30",
        "StartAction": "A",
        "Actions": [
            block("A", "StatusFunctionArn", "B"),
            block("B", "StatusFunctionArn", "C"),
            block("C", "StatusFunctionArn", "End"),
            {"Identifier": "End", "Type": "DisconnectParticipant", "Transitions": {}},
        ],
    }
    assert any("no prompt" in problem for problem in check_flow(flow))
    report = call(Functions(), flow=flow, check=False, latency=lambda f: 7.5)
    assert report.error_branches == ["C: CHAIN_LIMIT"]
