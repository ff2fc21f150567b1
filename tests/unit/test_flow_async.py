"""The outcome waiter's part of the shipped flow, branch by branch, and the simulator's rules for it:
the asynchronous invocation runs beside the Continue branch (the hold prompt), the 60 s limit, only the most
recent invocation id, "Load Lambda result", and every fallback to the polling loop (Error, NoMatchingError,
InProgress, the Wait's time limit, an answer the flow cannot branch on).

Fake functions answer at once; ``latency`` gives each the simulated time it takes (tests/flow_fakes.py)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from holdline_local.simulator import CallReport, invoked_functions
from tests.flow_fakes import DONE, RUNNING, Functions, Refuse, action, call, edited

WAITER = "OutcomeWaiterFunction"
HOLD = "Play hold prompt while waiting"
HOLD_PROMPT = "Still working."
# The Continue branch: the hold message (2 words: 1 s), then three 1 s pauses, again and again.
CONTINUE_BRANCH = {
    HOLD,
    "Pause a second while waiting",
}  # the seeded configuration's hold prompt (tests/flow_fakes.CONFIG)
FALLBACK = ["Fall back to polling", "Hold loop", "Play hold message", "Check status"]


def slow(seconds: float, function: str = WAITER) -> Callable[[str], float]:
    return lambda name: seconds if name == function else 0.0


def steps(report: CallReport, kind: str) -> list[Any]:
    return [s for s in report.steps if s.kind == kind]


def announced_at(report: CallReport) -> float:
    """When the caller starts hearing the outcome ("Thank you for holding." begins), after the first waiter
    invocation started."""
    started = next(s.at for s in report.steps if s.name == WAITER)
    return next(s.at for s in report.steps if s.action == "Announce result") - started


def fell_back(report: CallReport) -> bool:
    path = report.path
    start = path.index("Fall back to polling") if "Fall back to polling" in path else -1
    return start >= 0 and path[start : start + 4] == FALLBACK and report.attributes["holdMode"] == "POLLING"


# ---- the event cuts the hold prompt ----------------------------------------------------------------------
@pytest.mark.parametrize("returns_after", [0.0, 1.5, 4.2, 6.9, 7.1, 12.0, 45.0])
def test_the_outcome_is_heard_the_moment_the_waiter_returns(returns_after: float) -> None:
    report = call(Functions(), latency=slow(returns_after))
    assert (report.outcome, report.ending, report.error_branches) == ("SUCCEEDED", "DISCONNECTED", [])
    assert invoked_functions(report.steps) == ["ConfigLookupFunction", "StarterFunction", WAITER, "ResultsFunction"]
    started = next(s for s in report.steps if s.name == WAITER)
    assert started.branch == "Started" and started.duration_ms == 0 and started.limit_ms == 60_000
    wait = steps(report, "wait")[0]
    assert (wait.name, wait.action) == ("LambdaReturned", "Hold for outcome")
    # The flow moved on at once; the Continue branch (hold message, pauses) played until the waiter returned.
    assert wait.at == pytest.approx(started.at)
    assert announced_at(report) == pytest.approx(returns_after, abs=0.05)
    held = [s for s in steps(report, "prompt") if s.action in CONTINUE_BRANCH]
    assert held[0].name == HOLD_PROMPT
    assert sum(s.duration_ms for s in held) / 1000 == pytest.approx(returns_after, abs=0.05)
    assert held[-1].note == "cut: Lambda returned" or returns_after == 0.0
    assert "Check status" not in report.path and "holdMode" not in report.attributes
    loaded = steps(report, "load")[0]
    assert (loaded.name, loaded.branch, loaded.answer) == (WAITER, "Success", DONE)
    assert loaded.duration_ms == pytest.approx(returns_after * 1000, abs=50)


def test_under_the_other_reading_the_prompt_plays_out_first() -> None:
    """``prompt_plays_out``: the event is taken once the playing prompt ends: the hold message (0-1 s) or the
    pause (1-2 s) it returned in."""
    for returns_after, played in ((0.5, 1.0), (1.5, 2.0)):
        cut = call(Functions(), latency=slow(returns_after))
        played_out = call(Functions(), latency=slow(returns_after), prompt_plays_out=True)
        assert announced_at(cut) == pytest.approx(returns_after, abs=0.05)
        assert announced_at(played_out) == pytest.approx(played, abs=0.05)
    assert played_out.outcome == "SUCCEEDED" and steps(played_out, "wait")[0].name == "LambdaReturned"


def test_keep_waiting_starts_another_round_until_the_outcome() -> None:
    functions = Functions(OutcomeWaiterFunction=[RUNNING, RUNNING, DONE])
    report = call(functions, latency=slow(55.0))
    assert report.outcome == "SUCCEEDED" and report.error_branches == []
    assert invoked_functions(report.steps).count(WAITER) == 3 and report.path.count("Outcome rounds") == 3
    assert [w.name for w in steps(report, "wait")] == ["LambdaReturned"] * 3
    # Each round is a fresh invocation with the tracker id: the previous one has ended.
    assert all(e["Details"]["Parameters"] == {"trackerId": "transfer-1"} for e in functions.called(WAITER))
    assert announced_at(report) == pytest.approx(3 * 55.0, abs=0.2)  # three rounds, the outcome at once


def test_the_waiter_saying_hold_exceeded_offers_a_callback() -> None:
    exceeded = {"status": "RUNNING", "keepWaiting": "false", "holdExceeded": "true"}
    report = call(Functions(OutcomeWaiterFunction=exceeded), latency=slow(3.0))
    assert (report.outcome, report.ending) == ("HOLD_EXCEEDED", "CALLBACK_CREATED")
    assert "ResultsFunction" not in invoked_functions(report.steps) and "Check status" not in report.path


def test_the_rounds_are_bounded_by_the_flows_own_loop_guard() -> None:
    report = call(Functions(OutcomeWaiterFunction=RUNNING), latency=slow(55.0))
    assert (report.outcome, report.ending) == ("HOLD_EXCEEDED", "CALLBACK_CREATED")
    assert invoked_functions(report.steps).count(WAITER) == 20  # the Loop's count
    assert "StatusFunction" not in invoked_functions(report.steps) and report.error_branches == []


def test_a_waiter_answer_under_json_validation_may_nest_but_must_say_keep_waiting() -> None:
    nested = {"status": "SUCCEEDED", "keepWaiting": "false", "detail": {"step": "DONE"}}
    assert call(Functions(OutcomeWaiterFunction=nested), latency=slow(1.0)).outcome == "SUCCEEDED"
    report = call(Functions(OutcomeWaiterFunction={"status": "SUCCEEDED"}), latency=slow(1.0))
    assert fell_back(report) and report.outcome == "SUCCEEDED"


# ---- each fallback to the polling loop -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("answer", "latency", "branch"),
    [
        (RuntimeError("crashed"), 2.0, "Load outcome: LAMBDA_EXCEPTION"),
        ({"status": "x" * (33 * 1024)}, 2.0, "Load outcome: RESPONSE_TOO_LARGE"),
        (["not", "an", "object"], 2.0, "Load outcome: INVALID_RESPONSE"),
        (Refuse(), 0.0, "Wait for outcome: INVOKE_REFUSED"),
    ],
    ids=["waiter-raises", "answer-too-large", "answer-not-an-object", "invocation-refused"],
)
def test_a_failed_waiter_falls_back_to_polling(answer: Any, latency: float, branch: str) -> None:
    functions = Functions(OutcomeWaiterFunction=answer)
    report = call(functions, latency=slow(latency))
    assert fell_back(report) and (report.outcome, report.ending) == ("SUCCEEDED", "DISCONNECTED")
    assert report.error_branches == [branch]
    assert invoked_functions(report.steps)[-3:] == ["StatusFunction", "StatusFunction", "ResultsFunction"]


def test_an_error_answer_from_the_waiter_falls_back_to_polling() -> None:
    throttled = {"status": "ERROR", "errorCode": "THROTTLED", "retryable": "true", "errorMessage": "Busy."}
    report = call(Functions(OutcomeWaiterFunction=throttled), latency=slow(1.0))
    assert fell_back(report) and report.outcome == "SUCCEEDED"
    assert report.error_branches == []  # no Error branch: the flow's own Compare sends it to the polling loop


def test_a_waiter_past_connects_60_s_never_returns_and_the_wait_times_out() -> None:
    report = call(Functions(), latency=slow(61.0))
    wait = steps(report, "wait")[0]
    assert wait.name == "WaitCompleted" and wait.duration_ms == pytest.approx(60_000)
    assert "Load outcome" not in report.path and fell_back(report) and report.outcome == "SUCCEEDED"
    held = [s for s in steps(report, "prompt") if s.action in CONTINUE_BRANCH]
    assert len(held) == 60 and sum(s.duration_ms for s in held) == pytest.approx(60_000)  # 15 x (1 s + 3 x 1 s)
    assert [s.action for s in held].count(HOLD) == 15


def test_a_waiter_that_keeps_failing_is_retried_within_the_block_then_falls_back() -> None:
    functions = Functions(OutcomeWaiterFunction=[RuntimeError("a"), RuntimeError("b"), DONE])
    report = call(functions, latency=slow(5.0))
    assert report.outcome == "SUCCEEDED" and report.error_branches == [] and "Check status" not in report.path
    assert len(functions.called(WAITER)) == 3
    assert steps(report, "load")[0].attempts == 3 and announced_at(report) == pytest.approx(15.0, abs=0.1)


def _wait_times_out_into_the_load(flow: dict[str, Any]) -> None:
    action(flow, "Hold for outcome")["Parameters"]["TimeLimitSeconds"] = "10"
    for condition in action(flow, "Hold for outcome")["Transitions"]["Conditions"]:
        if condition["Condition"]["Operands"] == ["WaitCompleted"]:
            condition["NextAction"] = "Load outcome"


def test_loading_a_result_still_in_progress_falls_back_to_polling() -> None:
    """An edited flow (the static rules refuse it: its Wait gives up before the invocation) loads the result
    while the waiter still runs: InProgress."""
    report = call(Functions(), flow=edited(_wait_times_out_into_the_load), check=False, latency=slow(30.0))
    assert report.error_branches == ["Load outcome: IN_PROGRESS"] and fell_back(report)
    assert steps(report, "wait")[0].name == "WaitCompleted" and report.outcome == "SUCCEEDED"


def test_a_wrong_invocation_id_waits_until_the_time_limit() -> None:
    """Connect's Wait docs: a wrong invocation id waits until the time limit."""
    flow = edited(lambda f: _set_event_id(f, "$.Attributes.trackerId"))
    report = call(Functions(), flow=flow, check=False, latency=slow(2.0))
    assert steps(report, "wait")[0].name == "WaitCompleted" and fell_back(report)


def test_an_unset_invocation_id_takes_the_waits_error_branch() -> None:
    flow = edited(lambda f: _set_event_id(f, "$.Attributes.noSuchThing"))
    report = call(Functions(), flow=flow, check=False, latency=slow(2.0))
    assert report.error_branches == ["Hold for outcome: $.Attributes.noSuchThing is not set"] and fell_back(report)


def _set_event_id(flow: dict[str, Any], path: str) -> None:
    event = action(flow, "Hold for outcome")["Parameters"]["InterruptibleEvents"]["LambdaReturned"]
    event["AsyncLambdaCompletionEvent"]["Identifier"] = path


# ---- Connect's rules the shipped flow does not reach on its own -----------------------------------------
def test_only_the_most_recent_asynchronous_invocation_id_is_kept() -> None:
    """Two asynchronous invocations in a row (the static rules refuse this): the Wait and the load follow the
    second, which returns first; the first one's answer is never read."""

    def twice(flow: dict[str, Any]) -> None:
        first = action(flow, "Wait for outcome")
        second = copy.deepcopy(first)
        second["Identifier"] = "Wait again"
        first["Transitions"]["NextAction"] = "Wait again"
        flow["Actions"].append(second)

    first_answer = {"status": "FAILED", "keepWaiting": "false"}
    functions = Functions(OutcomeWaiterFunction=[first_answer, DONE])
    latencies = iter([40.0, 3.0])
    report = call(functions, flow=edited(twice), check=False, latency=lambda f: next(latencies) if f == WAITER else 0)
    assert steps(report, "load")[0].answer == DONE and announced_at(report) == pytest.approx(3.0, abs=0.1)


def test_a_continue_branch_that_runs_out_leaves_the_caller_in_silence_until_the_event() -> None:
    """An edited flow whose Continue branch goes on to an attribute update (refused statically): the contact
    stays in the Wait, silent, and the update never runs."""
    flow = edited(
        lambda f: action(f, "Play hold prompt while waiting")["Transitions"].update(NextAction="Note success")
    )
    report = call(Functions(), flow=flow, check=False, latency=slow(20.0))
    wait = steps(report, "wait")[0]
    assert wait.name == "LambdaReturned" and "ran out at Note success" in wait.note
    assert wait.duration_ms == pytest.approx(20_000, abs=50)
    assert [s.duration_ms for s in steps(report, "prompt") if s.action in CONTINUE_BRANCH] == [1000]
    assert report.outcome == "SUCCEEDED" and "Note success" in report.path[-8:]  # reached later, by the flow
