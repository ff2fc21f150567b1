"""The shipped Connect flow: Connect's rules (static and at run time), the nested template that deploys it, the
limit each function is told, the starter's retry and the lookup that tells the caller whether a transfer whose start
went unheard was made, and every path a caller can take through the polling loop (the outcome waiter's paths,
and each fallback from them to the polling loop: tests/unit/test_flow_async.py).

The functions here are fakes (answers chosen per test) so that each branch of the flow is reached on purpose;
tests/e2e/test_simulated_call.py drives the same flow against the real handlers on the local stack.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest

from holdline_local.flows import (
    CONNECT_TEMPLATE_PATH,
    FLOW_PATH,
    function_placeholders,
    invoked_placeholders,
    missing_in_parent,
    render_connect_template,
    template_flow,
)
from holdline_local.simulator import FlowRuleViolation, SimulatedCall, check_flow, invoked_functions
from tests.conftest import load_event
from tests.flow_fakes import DONE, FLOW, POLLING, RUNNING, STARTED, SUCCEEDED, Functions, action, call, edited

_action, _edited = action, edited


# ---- the shipped flow and the template ------------------------------------------------------------------
def test_shipped_flow_keeps_every_rule() -> None:
    assert check_flow(FLOW) == []


def test_the_nested_template_deploys_exactly_the_shipped_flow() -> None:
    assert CONNECT_TEMPLATE_PATH.read_text() == render_connect_template(FLOW), (
        "run `make flow-sync` after editing flows/transfer-flow.json"
    )
    assert template_flow() == FLOW
    # Every function the flow invokes is passed to the nested template as a function of template.yaml, and back.
    assert invoked_placeholders(FLOW) == [
        "ConfigLookupFunctionArn",
        "StarterFunctionArn",
        "StatusFunctionArn",  # the lookup when the starter's answer was lost
        "OutcomeWaiterFunctionArn",
        "ResultsFunctionArn",
    ]
    assert set(function_placeholders()) == set(invoked_placeholders(FLOW)) and missing_in_parent() == []
    assert set(function_placeholders().values()) == {
        "ConfigLookupFunction",
        "StarterFunction",
        "OutcomeWaiterFunction",
        "StatusFunction",
        "ResultsFunction",
    }
    assert "${ConnectFallbackQueueArn}" in FLOW_PATH.read_text()


def test_the_nested_template_follows_the_functions_the_flow_names() -> None:
    from holdline_local import flows

    flow = _edited(
        lambda f: _action(f, "Read result")["Parameters"].__setitem__("LambdaFunctionARN", "${XFunctionArn}")
    )
    rendered = flows.render_connect_template(flow)
    assert "  XFunctionArn:" in rendered and "XConnectPermission" in rendered and "ResultsConnect" not in rendered
    with pytest.raises(ValueError, match="BucketName"):
        flows.render_connect_template(
            _edited(lambda f: _action(f, "Say goodbye")["Parameters"].update(Text="${BucketName}"))
        )


def test_every_lambda_block_leaves_headroom_under_connects_limit() -> None:
    from holdline_local.template import read_stack

    functions = read_stack().functions
    for block_action in FLOW["Actions"]:
        if block_action["Type"] != "InvokeLambdaFunction":
            continue
        parameters = block_action["Parameters"]
        function = functions[function_placeholders()[parameters["LambdaFunctionARN"][2:-1]]]
        block = int(parameters["InvocationTimeLimitSeconds"])
        if parameters["InvocationType"] == "ASYNCHRONOUS":
            # Connect allows 60; the function answers a margin before the limit it is told, which is this block's.
            assert block <= 60 and function.timeout <= block, block_action["Identifier"]
            assert function.environment["CONNECT_ASYNC_TIMEOUT_SECONDS"] == str(block), block_action["Identifier"]
        else:
            # Connect allows 8; its retries need time inside the block
            assert block <= 6 and function.timeout <= block, block_action["Identifier"]


def test_each_function_is_told_the_limit_of_the_block_that_invokes_it() -> None:
    """CONNECT_TIMEOUT_SECONDS (CONNECT_ASYNC_TIMEOUT_SECONDS for an ASYNCHRONOUS block) is what the function's
    budget runs against: it must be the InvocationTimeLimitSeconds of the block that invokes it, the smallest one
    when several blocks do. A larger value lets AWS retries run past the moment Connect gives up."""
    from holdline_local.template import read_stack

    functions = read_stack().functions
    limits: dict[tuple[str, str], int] = {}
    for block_action in FLOW["Actions"]:
        if block_action["Type"] != "InvokeLambdaFunction":
            continue
        parameters = block_action["Parameters"]
        function = function_placeholders()[parameters["LambdaFunctionARN"][2:-1]]
        asynchronous = parameters["InvocationType"] == "ASYNCHRONOUS"
        variable = "CONNECT_ASYNC_TIMEOUT_SECONDS" if asynchronous else "CONNECT_TIMEOUT_SECONDS"
        limit = int(parameters["InvocationTimeLimitSeconds"])
        limits[(function, variable)] = min(limit, limits.get((function, variable), limit))
    told = {key: functions[key[0]].environment.get(key[1]) for key in limits}
    assert {key: float(value) if value is not None else None for key, value in told.items()} == {
        key: float(limit) for key, limit in limits.items()
    }
    # Every synchronous block's function is told its limit (none is left to the 8 s default).
    assert {name for name, variable in limits if variable == "CONNECT_TIMEOUT_SECONDS"} == {
        "ConfigLookupFunction",
        "StarterFunction",
        "StatusFunction",
        "ResultsFunction",
    }


def test_the_lookup_asks_for_the_request_the_starter_was_asked_for() -> None:
    """The lookup finds the transfer by the tracker id the starter derives from (operation, ContactId, requestId):
    it must pass the same requestId and operation (here: none, so both default) and no tracker id of its own."""
    start = _action(FLOW, "Start transfer")["Parameters"]["LambdaInvocationAttributes"]
    lookup = _action(FLOW, LOOKUP)["Parameters"]["LambdaInvocationAttributes"]
    key = ("requestId", "operation")
    assert {k: v for k, v in lookup.items() if k in key} == {k: v for k, v in start.items() if k in key}
    assert "trackerId" not in lookup
    assert function_placeholders()[_action(FLOW, LOOKUP)["Parameters"]["LambdaFunctionARN"][2:-1]] == "StatusFunction"


# ---- a flow edited so that it breaks a rule is refused -------------------------------------------------
def _set_timeout(value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda f: _action(f, "Start transfer")["Parameters"].__setitem__("InvocationTimeLimitSeconds", value)


def _drop_errors(name: str) -> Callable[[dict[str, Any]], None]:
    return lambda f: _action(f, name)["Transitions"].pop("Errors")


def _set(name: str, key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda f: _action(f, name)["Parameters"].__setitem__(key, value)


def _next(name: str, target: str) -> Callable[[dict[str, Any]], None]:
    return lambda f: _action(f, name)["Transitions"].__setitem__("NextAction", target)


def _spin_in_the_continue_branch(flow: dict[str, Any]) -> None:
    flow["Actions"].append(
        {
            "Identifier": "Spin",
            "Type": "Loop",
            "Parameters": {"LoopCount": "3"},
            "Transitions": {
                "Conditions": [
                    {"NextAction": "Spin", "Condition": {"Operator": "Equals", "Operands": [operand]}}
                    for operand in ("ContinueLooping", "DoneLooping")
                ]
            },
        }
    )
    for condition in _action(flow, WAIT)["Transitions"]["Conditions"]:
        if condition["Condition"]["Operands"] == ["Continue"]:
            condition["NextAction"] = "Spin"


def _no_wait_mode(flow: dict[str, Any]) -> None:
    parameters = _action(flow, WAIT)["Parameters"]
    parameters.pop("InterruptibleEvents")
    parameters.pop("ContinueExecution")


WAITER, WAIT, HOLD, LOAD = "Wait for outcome", "Hold for outcome", "Play hold prompt while waiting", "Load outcome"


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
        # The asynchronous invocation, its Wait and "Load Lambda result".
        (_set(WAITER, "InvocationTimeLimitSeconds", "61"), "InvocationTimeLimitSeconds '61' is not a whole number"),
        (lambda f: _action(f, WAITER)["Parameters"]["ResponseValidation"].update(ResponseType="XML"), "or JSON"),
        (_set(WAITER, "InvocationType", "EVENT"), "SYNCHRONOUS or ASYNCHRONOUS"),
        (_set("Read result", "InvocationType", "ASYNCHRONOUS"), "Read result: an asynchronous invocation must be"),
        (_next(WAITER, "Load outcome"), "Wait for outcome: an asynchronous invocation must be followed by a Wait"),
        (_set(WAIT, "TimeLimitSeconds", "30"), "shorter than the invocation's limit"),
        (_set(WAIT, "TimeLimitSeconds", "0"), "TimeLimitSeconds '0'"),
        (_no_wait_mode, "on a voice call a Wait needs ContinueExecution TRUE or a LambdaReturned event"),
        (_set(WAIT, "ContinueExecution", "FALSE"), "conditions must be exactly ['LambdaReturned', 'WaitCompleted']"),
        (lambda f: f["Metadata"].__setitem__("type", "agentWhisper"), "only in inbound and customer-queue flows"),
        (_next(HOLD, "Hold for outcome"), "a Wait cannot sit in a Continue branch"),
        (_next(HOLD, "Fall back to polling"), "Continue branch may only play prompts, not UpdateContactAttributes"),
        (_spin_in_the_continue_branch, "Continue branch loops without playing a prompt"),
        (_drop_errors(LOAD), "Load outcome: no InProgress branch"),
        (_set(LOAD, "LambdaInvocationId", "abc"), "LambdaInvocationId must be a reference"),
        (_retarget(LOAD, "InProgress", "Hang up"), "Load outcome: its Error branch ends the call"),
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
    functions = Functions(OutcomeWaiterFunction=[RUNNING, DONE])
    report = call(functions, latency=lambda f: 30.0 if f == "OutcomeWaiterFunction" else 0.0)
    assert (report.outcome, report.ending, report.error_branches) == ("SUCCEEDED", "DISCONNECTED", [])
    assert invoked_functions(report.steps) == [
        "ConfigLookupFunction",
        "StarterFunction",
        "OutcomeWaiterFunction",
        "OutcomeWaiterFunction",
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
    polls = [e for f, e in functions.events if f in {"OutcomeWaiterFunction", "ResultsFunction"}]
    assert all(e["Details"]["Parameters"] == {"trackerId": "transfer-1"} for e in polls)
    assert all(e["Details"]["ContactData"]["Attributes"]["trackerId"] == "transfer-1" for e in polls)
    assert report.attributes["language"] == "en-US" and "holdMode" not in report.attributes


def test_polling_success_path_when_the_outcome_waiter_fails() -> None:
    functions = Functions(**POLLING)
    report = call(functions)
    assert (report.outcome, report.ending) == ("SUCCEEDED", "DISCONNECTED") and report.completed
    assert invoked_functions(report.steps) == [
        "ConfigLookupFunction",
        "StarterFunction",
        "OutcomeWaiterFunction",
        "StatusFunction",
        "StatusFunction",
        "ResultsFunction",
    ]
    assert report.error_branches == ["Load outcome: LAMBDA_EXCEPTION"] and report.attributes["holdMode"] == "POLLING"
    # Connect retried the failing waiter within its block, as it does any Lambda that returns an error.
    assert len(functions.called("OutcomeWaiterFunction")) == 4
    polls = functions.called("StatusFunction")
    assert all(e["Details"]["Parameters"] == {"trackerId": "transfer-1"} for e in polls)
    assert [s.name for s in report.steps if s.kind == "prompt"][-4] == "Still working."  # the polling loop's prompt


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


LOOKUP = "Look for the transfer"
ERROR = {"status": "ERROR", "errorCode": "THROTTLED", "retryable": "true", "errorMessage": "Busy."}
NOT_FOUND = {"status": "NOT_FOUND", "keepWaiting": "false", "errorCode": "NOT_FOUND"}
#: What status answers the lookup when the starter's transfer exists (it names the tracker it found).
FOUND = {**RUNNING, "trackerId": "transfer-1"}


def _lookups(functions: Functions) -> list[Any]:
    return [e for e in functions.called("StatusFunction") if "trackerId" not in e["Details"]["Parameters"]]


def test_a_starter_error_answer_is_retried_once_then_succeeds() -> None:
    functions = Functions(StarterFunction=[ERROR, STARTED])
    report = call(functions)
    assert (report.outcome, report.ending, report.error_branches) == ("SUCCEEDED", "DISCONNECTED", [])
    assert len(functions.called("StarterFunction")) == 2 and _lookups(functions) == []
    assert "holdlineErrorCode" not in report.attributes  # a retried error is no outcome
    # The same request both times (the starter is idempotent), and a prompt between the two invocations.
    first, second = functions.called("StarterFunction")
    assert first["Details"]["Parameters"] == second["Details"]["Parameters"]
    assert report.path.count("Start transfer") == 2 and "Say one moment" in report.path
    assert report.tracker_id == "transfer-1"


def test_a_starter_error_branch_is_retried_once_then_succeeds() -> None:
    # One visit of the block: Connect's own retries (4 attempts), all failing; then the flow's retry succeeds.
    functions = Functions(StarterFunction=[RuntimeError("cold")] * 4 + [STARTED])
    report = call(functions)
    assert (report.outcome, report.ending) == ("SUCCEEDED", "DISCONNECTED")
    assert report.error_branches == ["Start transfer: LAMBDA_EXCEPTION"]
    assert [s.attempts for s in report.steps if s.name == "StarterFunction"] == [4, 1]


def test_starter_errs_twice_and_nothing_started_the_caller_hears_so() -> None:
    functions = Functions(StarterFunction=ERROR, StatusFunction=NOT_FOUND)
    report = call(functions)
    assert (report.outcome, report.ending) == ("NOT_STARTED", "QUEUED_FOR_AGENT")
    assert report.attributes["holdlineStartError"] == "THROTTLED"  # what the starter said, for the contact record
    assert invoked_functions(report.steps) == [
        "ConfigLookupFunction",
        "StarterFunction",
        "StarterFunction",
        "StatusFunction",
    ]
    assert "Your transfer has not been made." in report.caller_hears
    assert "Let me connect you to an agent." in report.caller_hears
    # The lookup names no tracker: status finds the transfer by this contact (and request) itself.
    (lookup,) = _lookups(functions)
    assert lookup["Details"]["Parameters"] == {}
    assert (
        lookup["Details"]["ContactData"]["ContactId"]
        == functions.called("StarterFunction")[0]["Details"]["ContactData"]["ContactId"]
    )


def test_starter_times_out_but_the_transfer_started_the_caller_holds_and_hears_the_outcome() -> None:
    """Both visits of the starter's block time out (the runs went on and started the transfer): the lookup finds
    it, and the caller holds for it and hears the real outcome, not an apology."""
    functions = Functions(StatusFunction=FOUND)
    report = call(functions, latency=lambda f: 6.5 if f == "StarterFunction" else 0.0)
    assert (report.outcome, report.ending) == ("SUCCEEDED", "DISCONNECTED") and report.completed
    assert report.error_branches == ["Start transfer: TIMEOUT", "Start transfer: TIMEOUT"]
    assert invoked_functions(report.steps) == [
        "ConfigLookupFunction",
        "StarterFunction",
        "StarterFunction",
        "StatusFunction",
        "OutcomeWaiterFunction",
        "ResultsFunction",
    ]
    assert report.attributes["trackerId"] == "transfer-1" == report.tracker_id
    assert all(
        e["Details"]["Parameters"] == {"trackerId": "transfer-1"} for e in functions.called("OutcomeWaiterFunction")
    )
    assert "250.00 USD is complete" in report.caller_hears and "Sorry" not in report.caller_hears


@pytest.mark.parametrize(
    "found",
    [{**FOUND, "status": "SUCCEEDED", "keepWaiting": "false"}, {**FOUND, "status": "FAILED", "keepWaiting": "false"}],
    ids=["already-succeeded", "already-failed"],
)
def test_a_transfer_found_already_final_is_told_as_it_ended(found: dict[str, str]) -> None:
    failed = {"status": "FAILED", "errorCode": "INSUFFICIENT_FUNDS", "errorMessage": "Not enough.", "refunded": "false"}
    results = SUCCEEDED if found["status"] == "SUCCEEDED" else failed
    report = call(Functions(StarterFunction=RuntimeError("down"), StatusFunction=found, ResultsFunction=results))
    assert report.outcome == found["status"] and report.completed


def test_a_lookup_that_fails_says_it_could_not_confirm_and_hands_over() -> None:
    """Neither the starter nor the lookup answered: the truth is unknown, and the caller is told exactly that
    (never "not made", which could send them to pay again)."""
    for lookup in (RuntimeError("status down"), {**ERROR, "status": "ERROR"}):
        report = call(Functions(StarterFunction=ERROR, StatusFunction=lookup))
        assert (report.outcome, report.ending) == ("START_UNKNOWN", "QUEUED_FOR_AGENT")
        assert "could not confirm" in report.caller_hears and "not been made" not in report.caller_hears


def test_a_rejected_request_is_not_retried() -> None:
    rejected = {"status": "REJECTED", "errorCode": "SAME_ACCOUNT", "errorMessage": "Those are the same account."}
    functions = Functions(StarterFunction=[rejected, STARTED])
    report = call(functions)
    assert report.outcome == "REJECTED" and len(functions.called("StarterFunction")) == 1


def test_connect_retries_a_failing_starter_within_the_block() -> None:
    functions = Functions(StarterFunction=[RuntimeError("cold"), RuntimeError("again"), STARTED])
    report = call(functions)
    assert report.outcome == "SUCCEEDED"
    starter_step = next(s for s in report.steps if s.name == "StarterFunction")
    assert starter_step.attempts == 3
    # Every attempt carries the same contact: that is why the starter must be idempotent.
    ids = {e["Details"]["ContactData"]["ContactId"] for f, e in functions.events if f == "StarterFunction"}
    assert len(ids) == 1


def test_starter_failing_every_retry_and_nothing_started_goes_to_an_agent() -> None:
    report = call(Functions(StarterFunction=RuntimeError("down"), StatusFunction=NOT_FOUND))
    assert (report.outcome, report.ending) == ("NOT_STARTED", "QUEUED_FOR_AGENT")
    assert [s.attempts for s in report.steps if s.name == "StarterFunction"] == [4, 4]
    assert report.error_branches == ["Start transfer: LAMBDA_EXCEPTION"] * 2
    assert "Let me connect you to an agent." in report.caller_hears


def test_slow_starter_times_out_at_the_blocks_own_limit() -> None:
    report = call(Functions(StatusFunction=NOT_FOUND), latency=lambda f: 6.5 if f == "StarterFunction" else 0.0)
    assert report.outcome == "NOT_STARTED"
    assert report.error_branches == ["Start transfer: TIMEOUT"] * 2


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
    report = call(Functions(**POLLING, StatusFunction=status_answer))
    assert (report.outcome, report.error_code, report.ending) == ("ERROR_BRANCH", reason, "QUEUED_FOR_AGENT")
    assert not report.completed
    assert "ResultsFunction" not in invoked_functions(report.steps)


def test_unexpected_poll_answer_goes_to_an_agent() -> None:
    report = call(Functions(**POLLING, StatusFunction={"status": "NOT_FOUND", "keepWaiting": "maybe"}))
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
    report = call(Functions(**POLLING, StatusFunction=exceeded))
    assert (report.outcome, report.ending) == ("HOLD_EXCEEDED", "CALLBACK_CREATED")
    assert "ResultsFunction" not in invoked_functions(report.steps)
    assert "call you back" in report.caller_hears


def test_the_flows_own_loop_guard_ends_an_endless_hold() -> None:
    report = call(Functions(**POLLING, StatusFunction=RUNNING))
    assert (report.outcome, report.ending) == ("HOLD_EXCEEDED", "CALLBACK_CREATED")
    assert invoked_functions(report.steps).count("StatusFunction") == 100  # LoopCount
    # Each poll came after a hold prompt with its 3 s pause: the chain limit never came close.
    assert max(s.at for s in report.steps) > 100 * 3
    assert report.error_branches == ["Load outcome: LAMBDA_EXCEPTION"]  # only the fallback to the polling loop


def test_full_queue_offers_a_callback_instead() -> None:
    report = call(Functions(StarterFunction=RuntimeError("down"), StatusFunction=NOT_FOUND), queue_at_capacity=True)
    assert (report.outcome, report.ending) == ("NOT_STARTED", "CALLBACK_CREATED")
    assert report.path[-4:] == ["Set callback number", "Create callback", "Confirm callback", "Hang up"]


def test_no_callback_number_ends_politely() -> None:
    event = load_event("starter.json")
    event["Details"]["ContactData"]["CustomerEndpoint"] = {"Address": "anonymous", "Type": "TELEPHONE_NUMBER"}
    exceeded = {"status": "RUNNING", "keepWaiting": "false", "holdExceeded": "true"}
    report = SimulatedCall(Functions(**POLLING, StatusFunction=exceeded), event, time_scale=0).run()
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
