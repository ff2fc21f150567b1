"""Every state machine definition: valid ASL (npm asl-validator) and the house rules for a saga."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from holdline.dal.bank_api import RETRY_AFTER_CEILING_SECONDS

REPO = Path(__file__).resolve().parents[2]
DEFINITIONS = sorted((REPO / "statemachines").glob("*.asl.json"))
TRANSIENT_LAMBDA_ERRORS = {
    # Lambda's transient service errors ("Handle Lambda service exceptions", Step Functions developer guide).
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.ClientExecutionTimeoutException",
    "Lambda.TooManyRequestsException",
    # A function stopped at its own Timeout: Sandbox.Timedout on current runtimes, Lambda.Unknown on older ones.
    # No Retry matches these unless it names them, and every task here calls an idempotent function.
    "Sandbox.Timedout",
    "Lambda.Unknown",
}
BUSINESS_ERRORS = {"InsufficientFunds", "AccountNotFound", "AccountFrozen"}


def _states(definition: dict[str, Any], caught: bool = False) -> dict[str, dict[str, Any]]:
    """All states, including those inside Parallel branches and Map iterators. A state inside a branch whose
    Parallel or Map has a Catch is marked ``_caughtByParent``: an error there is caught one level up."""
    found: dict[str, dict[str, Any]] = {}
    for name, state in definition["States"].items():
        found[name] = {**state, "_caughtByParent": caught}
        inner_caught = caught or bool(state.get("Catch"))
        for branch in state.get("Branches", []):
            found.update(_states(branch, inner_caught))
        for key in ("Iterator", "ItemProcessor"):
            if key in state:
                found.update(_states(state[key], inner_caught))
    return found


def test_there_are_definitions() -> None:
    assert DEFINITIONS


@pytest.mark.parametrize("path", DEFINITIONS, ids=lambda p: p.name)
def test_asl_validator_accepts(path: Path) -> None:
    npx = shutil.which("npx")
    assert npx, "node/npx is required (make install runs npm ci)"
    result = subprocess.run(
        [npx, "--no-install", "asl-validator", "--json-path", str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", DEFINITIONS, ids=lambda p: p.name)
def test_timeouts_retries_and_catches(path: Path) -> None:
    definition = json.loads(path.read_text())
    assert definition.get("TimeoutSeconds"), "the whole execution needs a timeout"
    for name, state in _states(definition).items():
        if state["Type"] in ("Parallel", "Map"):
            assert state.get("Catch") or state["_caughtByParent"], f"{name}: a failed branch must be caught"
        if state["Type"] != "Task":
            continue
        assert state.get("TimeoutSeconds"), f"{name}: Step Functions has no task timeout by default"
        assert state.get("Retry"), f"{name}: no Retry"
        for retrier in state["Retry"]:
            assert "States.ALL" not in retrier["ErrorEquals"], f"{name}: retrying every error retries business ones"
            if "BankThrottled" in retrier["ErrorEquals"]:
                _assert_honours_retry_after(name, retrier)
            else:
                assert retrier.get("JitterStrategy") == "FULL", f"{name}: retries without jitter stampede"
            assert retrier.get("MaxDelaySeconds"), f"{name}: unbounded backoff"
            assert not BUSINESS_ERRORS & set(retrier["ErrorEquals"]), f"{name}: business errors are never retried"
        if state["Resource"].endswith(":lambda:invoke"):
            retried = set().union(*(set(r["ErrorEquals"]) for r in state["Retry"]))
            assert retried >= TRANSIENT_LAMBDA_ERRORS, f"{name}: Lambda's transient errors must be retried"
            assert state.get("Catch") or state["_caughtByParent"], f"{name}: a failed leg must be caught"
        for catcher in state.get("Catch", []):
            if "States.ALL" in catcher["ErrorEquals"]:
                assert catcher == state["Catch"][-1] and catcher["ErrorEquals"] == ["States.ALL"]


def _assert_honours_retry_after(name: str, retrier: dict[str, Any]) -> None:
    """A leg waits a 429's Retry-After out itself (jittered upward) when it fits in its budget, and raises
    BankThrottled at once when it does not: the state machine's retry must then come no sooner than the bank's
    Retry-After ceiling. FULL jitter draws the delay between 0 and the computed interval (Step Functions
    "Retrying after an error": JitterStrategy), so it could retry at once; NONE waits IntervalSeconds."""
    assert retrier["ErrorEquals"] == ["BankThrottled"], f"{name}: BankThrottled has a retrier of its own"
    assert retrier.get("JitterStrategy") == "NONE", f"{name}: FULL jitter may retry before Retry-After"
    assert retrier["IntervalSeconds"] >= RETRY_AFTER_CEILING_SECONDS, f"{name}: the first retry precedes Retry-After"
    assert retrier.get("BackoffRate", 2.0) >= 1 and retrier.get("MaxDelaySeconds")


@pytest.mark.parametrize("path", DEFINITIONS, ids=lambda p: p.name)
def test_bank_throttling_is_retried_no_sooner_than_retry_after(path: Path) -> None:
    definition = json.loads(path.read_text())
    for name, state in _states(definition).items():
        if state["Type"] == "Task" and state["Resource"].endswith(":lambda:invoke"):
            throttled = [r for r in state["Retry"] if "BankThrottled" in r["ErrorEquals"]]
            if "transfer" in path.name:
                assert throttled, f"{name}: a leg that calls the bank must retry BankThrottled"
            for retrier in throttled:
                _assert_honours_retry_after(name, retrier)


def test_nothing_after_both_legs_settled_compensates() -> None:
    """Once DebitSettled and CreditSettled saw SETTLED the transfer has succeeded: every path from
    RecordConfirming ends at RecordSucceeded, and Confirm is given the payment ids it derives the number from."""
    definition = json.loads((REPO / "statemachines" / "transfer.asl.json").read_text())
    states = definition["States"]
    seen, todo = set(), ["RecordConfirming"]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        state = states[name]
        todo += [state["Next"]] if "Next" in state else []
        todo += [catcher["Next"] for catcher in state.get("Catch", [])]
    assert "RecordSucceeded" in seen and not {"RecordRefunding", "Refund", "RecordFailed"} & seen, seen
    payload = states["Confirm"]["Parameters"]["Payload"]
    assert payload["debitPaymentId.$"] == "$.debit.paymentId" and payload["creditPaymentId.$"] == "$.credit.paymentId"
