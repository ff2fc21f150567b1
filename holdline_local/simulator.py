"""A simulated Amazon Connect call: what the contact flow does, with Connect's rules applied.

The flow invokes the starter, copies ``trackerId`` to a contact attribute, then loops (hold prompt, invoke
status) until ``keepWaiting`` is false, and invokes results. Connect's rules, checked on every invocation:
the answer must come within the block's timeout (8 s at most), be a flat map of strings (STRING_MAP
validation) and under 32 KB; otherwise the block takes its Error branch. A chain of invocations with no
prompt between them must stay under about 20 s.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

CONNECT_MAX_TIMEOUT_SECONDS = 8.0
CHAIN_LIMIT_SECONDS = 20.0
MAX_ANSWER_BYTES = 32 * 1024

# Invoke a function by name with an event; returns (payload, function_error) as Lambda's Invoke API does.
Invoker = Callable[[str, Mapping[str, Any]], tuple[Any, str | None]]


@dataclass
class Step:
    at: float  # seconds since the call began (simulated clock: hold prompts count in full)
    kind: str  # "invoke" | "prompt"
    name: str
    duration_ms: float = 0.0
    answer: Mapping[str, Any] | None = None
    branch: str = ""  # "Success" | "Error" for invocations
    note: str = ""


@dataclass
class CallReport:
    contact_id: str
    steps: list[Step] = field(default_factory=list)
    outcome: str = ""  # the results' status, or REJECTED / ERROR / ERROR_BRANCH / HOLD_EXCEEDED
    error_code: str = ""
    caller_hears: str = ""
    tracker_id: str = ""

    @property
    def completed(self) -> bool:
        """The call reached a final outcome through the flow's normal path (no Error branch, not stuck)."""
        return self.outcome in {"SUCCEEDED", "FAILED", "REJECTED"}

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["completed"] = self.completed
        data["invocations"] = sum(1 for step in self.steps if step.kind == "invoke")
        return data


class _ErrorBranch(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SimulatedCall:
    def __init__(
        self,
        invoke: Invoker,
        event: Mapping[str, Any],
        *,
        time_scale: float = 0.02,
        block_timeout: float = CONNECT_MAX_TIMEOUT_SECONDS,
        max_polls: int = 200,
        on_step: Callable[[Step], None] | None = None,
    ) -> None:
        self._invoke = invoke
        self._event = copy.deepcopy(dict(event))
        self._time_scale = time_scale
        self._block_timeout = min(block_timeout, CONNECT_MAX_TIMEOUT_SECONDS)
        self._max_polls = max_polls
        self._on_step = on_step
        self._clock = 0.0  # simulated seconds: prompts count at their full length, invocations as measured
        self._since_prompt = 0.0
        contact = self._event.setdefault("Details", {}).setdefault("ContactData", {})
        self.report = CallReport(contact_id=str(contact.get("ContactId", "")))

    # ---- the flow ----------------------------------------------------------------------------------------
    def run(self) -> CallReport:
        try:
            self._flow()
        except _ErrorBranch as branch:
            self.report.outcome = "ERROR_BRANCH"
            self.report.error_code = branch.reason
            self.report.caller_hears = "Sorry, we could not complete that. Let me connect you to an agent."
        return self.report

    def _flow(self) -> None:
        self._prompt("Please hold while we start your transfer.", 2)
        started = self._call("StarterFunction", self._event.get("Details", {}).get("Parameters", {}))
        if started.get("status") != "STARTED":
            self.report.outcome = str(started.get("status", "ERROR"))
            self.report.error_code = str(started.get("errorCode", ""))
            self.report.caller_hears = str(started.get("errorMessage", "We could not start that request."))
            return
        tracker_id = str(started["trackerId"])
        self.report.tracker_id = tracker_id
        # Set contact attributes: $.External values last only until the next Lambda, so the flow keeps them.
        self._event["Details"]["ContactData"].setdefault("Attributes", {})["trackerId"] = tracker_id
        wait = _seconds(started.get("nextPollSeconds"), 3)
        for _ in range(self._max_polls):
            self._prompt("Your transfer is in progress, please stay on the line.", wait)
            status = self._call("StatusFunction", {})
            if status.get("keepWaiting") != "true":
                if status.get("holdExceeded") == "true":
                    self.report.outcome = "HOLD_EXCEEDED"
                    self.report.caller_hears = "This is taking longer than usual. We will call you back."
                    return
                break
            wait = _seconds(status.get("nextPollSeconds"), 3)
        else:
            self.report.outcome = "HOLD_EXCEEDED"
            self.report.caller_hears = "This is taking longer than usual. We will call you back."
            return
        results = self._call("ResultsFunction", {})
        self.report.outcome = str(results.get("status", "ERROR"))
        self.report.error_code = str(results.get("errorCode", ""))
        if self.report.outcome == "SUCCEEDED":
            self.report.caller_hears = (
                f"Your transfer of {results.get('amount')} {results.get('currency')} is complete. "
                f"Your confirmation number is {results.get('confirmationNumber')}."
            )
        else:
            refunded = " The money has been returned to your account." if results.get("refunded") == "true" else ""
            self.report.caller_hears = str(results.get("errorMessage", "The transfer did not go through.")) + refunded

    # ---- Connect's rules -------------------------------------------------------------------------------
    def _prompt(self, text: str, seconds: float) -> None:
        self._record(Step(at=self._clock, kind="prompt", name=text, duration_ms=seconds * 1000))
        time.sleep(seconds * self._time_scale)
        self._clock += seconds
        self._since_prompt = 0.0

    def _call(self, function: str, parameters: Mapping[str, Any]) -> Mapping[str, Any]:
        event = copy.deepcopy(self._event)
        event["Details"]["Parameters"] = dict(parameters)
        started = time.perf_counter()
        payload, function_error = self._invoke(function, event)
        elapsed = time.perf_counter() - started
        step = Step(at=self._clock, kind="invoke", name=function, duration_ms=elapsed * 1000, branch="Success")
        self._clock += elapsed
        self._since_prompt += elapsed
        reason = ""
        if function_error:
            reason = "LAMBDA_EXCEPTION"
        elif elapsed > self._block_timeout:
            reason = "TIMEOUT"
        elif not _is_flat_string_map(payload):
            reason = "INVALID_RESPONSE"
        elif len(json.dumps(payload).encode()) > MAX_ANSWER_BYTES:
            reason = "RESPONSE_TOO_LARGE"
        elif self._since_prompt > CHAIN_LIMIT_SECONDS:
            reason = "CHAIN_LIMIT"
        step.answer = payload if isinstance(payload, Mapping) else {"raw": str(payload)[:200]}
        if reason:
            step.branch, step.note = "Error", reason
        self._record(step)
        if reason:
            raise _ErrorBranch(reason)
        assert isinstance(payload, Mapping)
        return payload

    def _record(self, step: Step) -> None:
        self.report.steps.append(step)
        if self._on_step is not None:
            self._on_step(step)


def _is_flat_string_map(payload: Any) -> bool:
    return isinstance(payload, Mapping) and all(
        isinstance(key, str) and isinstance(value, str) for key, value in payload.items()
    )


def _seconds(value: Any, default: float) -> float:
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        return default


def format_step(step: Step) -> str:
    if step.kind == "prompt":
        return f"  t={step.at:7.2f}s  ♪ hold prompt {step.duration_ms / 1000:4.1f}s  “{step.name}”"
    answer = step.answer or {}
    shown = " ".join(f"{k}={v}" for k, v in answer.items() if k not in {"errorMessage"})
    budget = f"{step.duration_ms:7.1f} ms of {CONNECT_MAX_TIMEOUT_SECONDS * 1000:.0f} ms"
    branch = "" if step.branch == "Success" else f"  → Error branch ({step.note})"
    return f"  t={step.at:7.2f}s  ▶ {step.name:<16} {budget}  {shown}{branch}"
