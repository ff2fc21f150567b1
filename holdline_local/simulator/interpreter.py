"""The interpreter: one simulated call through a flow, with Connect's run-time rules.

* A SYNCHRONOUS Lambda block takes its Error branch on a timeout (its own ``InvocationTimeLimitSeconds``), an
  exception (after Connect's retries, up to three, within the timeout), an invocation Lambda refused, an answer
  that is not a flat map of strings, or one over 32 KB; a chain of invocations with no prompt between them
  past ~20 s fails.
* An ASYNCHRONOUS block starts the invocation (Connect's retries included) in the background, keeps its id in
  ``$.LambdaInvocation.InvocationId`` (the most recent one only), clears ``$.External`` and moves on at once.
  Its run is timed against its own limit (at most 60 s).
* A Wait plays its Continue branch while it waits for the event (the invocation returning) or its time limit;
  "Load Lambda result" reads a finished invocation's answer (NoMatchingError: unknown id, failed, timed out or
  invalid answer; InProgress: still running). The readings of what Connect leaves undocumented are in the
  package docstring (holdline_local/simulator/__init__.py); ``prompt_plays_out`` tries the other one.

Time: prompts take simulated time (speech at ~150 words a minute plus SSML breaks) and really sleep, scaled by
``time_scale``; an invocation's time is its real duration (plus ``latency``, a test's simulated slowness).
While a Wait waits for an invocation that is still running, the call's clock follows that invocation's real
time, so what the caller hears is timed against what the function really did.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from holdline_local.flows import FLOW_PATH, function_placeholders, load_flow
from holdline_local.simulator.report import CallReport, Step
from holdline_local.simulator.rules import (
    LAMBDA,
    LOAD,
    LOOP,
    PROMPT,
    WAIT,
    FlowRuleViolation,
    check_flow,
    conditions,
    lambda_event_id,
)

CHAIN_LIMIT_SECONDS = 20.0
MAX_ANSWER_BYTES = 32 * 1024
CONNECT_RETRIES = 3  # after a returned error, "up to three times" within the block's timeout
WORDS_PER_SECOND = 2.5
# Invoke a function by name with an event; returns (payload, function_error) as Lambda's Invoke API does, or
# raises InvocationRefused. It may add a third item, facts about the run that Connect does not see but a person
# reading the timeline wants (``{"initDurationMs": 312.0}`` when the invocation started a new environment).
# An invoker may also have ``dry_run(function)`` (may this function be invoked at all?
# it raises InvocationRefused if not), which an asynchronous block asks before it starts the invocation.
Invoker = Callable[[str, Mapping[str, Any]], tuple[Any, ...]]

_JSONPATH = re.compile(r"\$\.[A-Za-z][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*")
_BREAK = re.compile(r'<break\s+time="(\d+(?:\.\d+)?)(ms|s)"\s*/>')
_TAG = re.compile(r"<[^>]+>")


class InvocationRefused(Exception):
    """Raised by an :data:`Invoker` when Lambda refused the invocation (it never ran)."""


class _Error(Exception):
    def __init__(self, error_type: str, reason: str) -> None:
        super().__init__(reason)
        self.error_type = error_type
        self.reason = reason


@dataclass
class _Run:
    """What a Lambda block's invocation did, Connect's retries included."""

    payload: Any = None
    function_error: str | None = None
    attempts: int = 0
    elapsed: float = 0.0  # seconds: real time plus the test's simulated latency
    refused: bool = False
    init_ms: float | None = None  # the last attempt started a new execution environment (a cold start)


@dataclass
class _AsyncInvocation:
    id: str
    function: str
    action: str
    started_at: float  # on the call's clock
    limit: float
    response_type: str
    real_start: float = field(default_factory=time.monotonic)
    done: threading.Event = field(default_factory=threading.Event)
    run: _Run | None = None

    def timeline(self) -> float:
        """How far its run has got, on the call's clock."""
        if self.run is not None:
            return self.started_at + self.run.elapsed
        return self.started_at + time.monotonic() - self.real_start

    def returned_at(self) -> float | None:
        """When it returned (an answer or an error), on the call's clock; None while it runs, or if it ran past
        its limit: Connect stopped waiting, and nothing returns."""
        if self.run is None or self.run.elapsed > self.limit:
            return None
        return self.started_at + self.run.elapsed


class SimulatedCall:
    """One call through the flow. ``event``'s Parameters are what the caller asked for: the simulator puts them
    in contact attributes, as the earlier part of a real flow (a Lex bot, DTMF input) would have."""

    def __init__(
        self,
        invoke: Invoker,
        event: Mapping[str, Any],
        *,
        flow: Mapping[str, Any] | None = None,
        flow_path: Path = FLOW_PATH,
        functions: Mapping[str, str] | None = None,
        time_scale: float = 0.02,
        latency: Callable[[str], float] | None = None,
        queue_at_capacity: bool = False,
        check: bool = True,
        max_actions: int = 5000,
        on_step: Callable[[Step], None] | None = None,
        prompt_plays_out: bool = False,
    ) -> None:
        self._invoke = invoke
        self._flow = copy.deepcopy(dict(flow)) if flow is not None else load_flow(flow_path)
        if check:
            violations = check_flow(self._flow)
            if violations:
                raise FlowRuleViolation(violations)
        self._actions = {a["Identifier"]: a for a in self._flow["Actions"]}
        # Placeholder (StarterFunctionArn) -> the function name to invoke (a logical ID locally, or physical).
        self._functions = dict(functions) if functions is not None else function_placeholders()
        self._time_scale = time_scale
        self._latency = latency or (lambda _function: 0.0)
        self._queue_at_capacity = queue_at_capacity
        self._max_actions = max_actions
        self._on_step = on_step
        self._prompt_plays_out = prompt_plays_out
        self._event = copy.deepcopy(dict(event))
        contact = self._event.setdefault("Details", {}).setdefault("ContactData", {})
        self._contact: dict[str, Any] = contact
        self._attributes: dict[str, str] = {str(k): str(v) for k, v in (contact.get("Attributes") or {}).items()}
        caller_input = self._event["Details"].get("Parameters") or {}
        self._attributes.update({str(k): str(v) for k, v in caller_input.items()})
        self._external: dict[str, Any] = {}
        self._invocations: dict[str, _AsyncInvocation] = {}
        self._last_invocation_id: str | None = None
        self._loops: dict[str, int] = {}
        self._target_queue = ""
        self._clock = 0.0
        self._real_began = time.monotonic()
        self._since_prompt = 0.0
        self._heard_since_invoke: list[str] = []
        self.report = CallReport(contact_id=str(contact.get("ContactId", "")))

    # ---- running -----------------------------------------------------------------------------------------
    def run(self) -> CallReport:
        self._real_began = time.monotonic()  # the call's start on this machine's clock
        current: str | None = self._flow["StartAction"]
        while current is not None:
            self._enter(current)
            action = self._actions[current]
            try:
                current = self._perform(action)
            except _Error as error:
                current = self._error_branch(action, error)
        self._finish()
        return self.report

    def _enter(self, name: str) -> None:
        if len(self.report.path) >= self._max_actions:
            raise RuntimeError(f"the flow ran {self._max_actions} actions without ending: a loop with no exit?")
        self.report.path.append(name)

    def _perform(self, action: Mapping[str, Any]) -> str | None:
        kind = action["Type"]
        parameters = action.get("Parameters", {})
        transitions = action.get("Transitions", {})
        following = transitions.get("NextAction")
        if kind == LAMBDA:
            if parameters.get("InvocationType") == "ASYNCHRONOUS":
                self._start_async(action)
            else:
                self._invoke_lambda(action)
        elif kind == WAIT:
            return self._wait(action)
        elif kind == LOAD:
            self._load_result(action)
        elif kind == PROMPT:
            self._prompt(action)
        elif kind == "UpdateContactAttributes":
            values = {key: self._value(value, required=True) for key, value in parameters["Attributes"].items()}
            self._attributes.update({key: str(value) for key, value in values.items()})
        elif kind == "UpdateContactData":
            if "LanguageCode" in parameters:
                self._contact["LanguageCode"] = str(self._value(parameters["LanguageCode"], required=True))
        elif kind == "Compare":
            value = self._value(parameters["ComparisonValue"], required=False)
            for condition in transitions.get("Conditions", []):
                rule = condition["Condition"]
                if rule["Operator"] == "Equals" and value is not None and str(value) == str(rule["Operands"][0]):
                    return str(condition["NextAction"])
            raise _Error("NoMatchingCondition", f"no condition matches {value!r}")
        elif kind == LOOP:
            return self._loop(action)
        elif kind == "UpdateContactTargetQueue":
            self._target_queue = str(self._value(parameters["QueueId"], required=True))
        elif kind == "TransferContactToQueue":
            if not self._target_queue:
                raise _Error("NoMatchingError", "no working queue set")
            if self._queue_at_capacity:
                raise _Error("QueueAtCapacity", "the queue is at capacity")
            self.report.ending = "QUEUED_FOR_AGENT"
            return None  # the contact leaves this flow for the queue
        elif kind == "UpdateContactCallbackNumber":
            number = self._value(parameters["CallbackNumber"], required=False)
            if not isinstance(number, str) or not re.match(r"^\+[1-9][0-9]{6,14}$", number):
                raise _Error("InvalidCallbackNumber", "not an E.164 number")
            self._attributes["_callbackNumber"] = number
        elif kind == "CreateCallbackContact":
            if not (parameters.get("QueueId") or self._target_queue):
                raise _Error("NoMatchingError", "no queue for the callback")
            self.report.ending = "CALLBACK_CREATED"
        elif kind == "DisconnectParticipant":
            self.report.ending = self.report.ending or "DISCONNECTED"
            return None
        # UpdateFlowLoggingBehavior: nothing to simulate.
        return str(following) if following else None

    def _error_branch(self, action: Mapping[str, Any], error: _Error) -> str:
        errors = {e["ErrorType"]: e["NextAction"] for e in action.get("Transitions", {}).get("Errors", [])}
        target = errors.get(error.error_type) or errors.get("NoMatchingError")
        if target is None:
            raise RuntimeError(f"{action['Identifier']}: {error.error_type} and no branch for it ({error.reason})")
        if error.error_type != "NoMatchingCondition":
            self.report.error_branches.append(f"{action['Identifier']}: {error.reason}")
        return str(target)

    def _loop(self, action: Mapping[str, Any]) -> str:
        name = action["Identifier"]
        count = int(str(self._value(action["Parameters"]["LoopCount"], required=True)))
        visits = self._loops.get(name, 0)
        branches = conditions(action)
        if visits < count:
            self._loops[name] = visits + 1
            return str(branches["ContinueLooping"])
        self._loops[name] = 0  # Connect resets the count once it has answered DoneLooping
        return str(branches["DoneLooping"])

    # ---- values ------------------------------------------------------------------------------------------
    def _lookup(self, path: str) -> Any:
        parts = path[2:].split(".")
        roots: dict[str, Any] = {**self._contact, "Attributes": self._attributes, "External": self._external}
        if self._last_invocation_id is not None:
            roots["LambdaInvocation"] = {"InvocationId": self._last_invocation_id}
        value: Any = roots
        for part in parts:
            if not isinstance(value, Mapping) or part not in value:
                return None
            value = value[part]
        return value

    def _value(self, value: Any, *, required: bool) -> Any:
        """A parameter: a single JSONPath reference is looked up (a missing one is an error where Connect
        would fail the action); text with references in it has them replaced (missing ones become empty)."""
        if isinstance(value, str) and _JSONPATH.fullmatch(value):
            found = self._lookup(value)
            if found is None and required:
                raise _Error("NoMatchingError", f"{value} is not set")
            return found
        if isinstance(value, str):
            return _JSONPATH.sub(lambda m: str(self._lookup(m.group(0)) or ""), value)
        return value

    # ---- prompts -----------------------------------------------------------------------------------------
    def _speech(self, action: Mapping[str, Any]) -> tuple[str, float]:
        parameters = action["Parameters"]
        markup = str(self._value(parameters.get("SSML") or parameters.get("Text") or "", required=False))
        return " ".join(_TAG.sub("", markup).split()), speaking_seconds(markup)

    def _prompt(self, action: Mapping[str, Any]) -> None:
        text, seconds = self._speech(action)
        self._played(action, text, seconds)
        time.sleep(seconds * self._time_scale)

    def _played(self, action: Mapping[str, Any], text: str, seconds: float, note: str = "") -> None:
        self._record(
            Step(
                at=self._clock,
                kind="prompt",
                name=text,
                action=action["Identifier"],
                duration_ms=seconds * 1000,
                note=note,
            )
        )
        self._clock += seconds
        self._since_prompt = 0.0
        self._heard_since_invoke.append(text)

    # ---- Lambda blocks -----------------------------------------------------------------------------------
    def _lambda_event(self, action: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        parameters = action["Parameters"]
        placeholder = str(parameters["LambdaFunctionARN"]).removeprefix("${").removesuffix("}")
        arguments = {}
        for key, value in (parameters.get("LambdaInvocationAttributes") or {}).items():
            resolved = self._value(value, required=False)
            if resolved is not None:
                arguments[key] = str(resolved)
        event = copy.deepcopy(self._event)
        event["Details"]["ContactData"] = {**copy.deepcopy(self._contact), "Attributes": dict(self._attributes)}
        event["Details"]["Parameters"] = arguments
        return self._functions.get(placeholder, placeholder), event

    def _run_with_retries(self, function: str, event: Mapping[str, Any], limit: float) -> _Run:
        run = _Run()
        while True:
            run.attempts += 1
            started = time.perf_counter()
            try:
                answer = self._invoke(function, event)
                run.payload, run.function_error = answer[0], answer[1]
                extras = answer[2] if len(answer) > 2 else {}
                run.init_ms = extras.get("initDurationMs")
            except InvocationRefused as refused:
                run.refused, run.payload = True, {"refused": str(refused)[:200]}
            run.elapsed += time.perf_counter() - started + self._latency(function)
            # Connect retries a returned error, up to three times, while the block's time lasts.
            if run.refused or not run.function_error or run.attempts > CONNECT_RETRIES or run.elapsed >= limit:
                return run

    def _invoke_lambda(self, action: Mapping[str, Any]) -> None:
        parameters = action["Parameters"]
        function, event = self._lambda_event(action)
        limit = float(parameters["InvocationTimeLimitSeconds"])
        self._external = {}  # $.External holds only the last Lambda's answer, and nothing after an error
        self._heard_since_invoke = []
        real_started = self._real_now()
        run = self._run_with_retries(function, event, limit)
        step = Step(
            at=self._clock,
            real_at=real_started,
            kind="invoke",
            name=function,
            action=action["Identifier"],
            duration_ms=run.elapsed * 1000,
            branch="Success",
            attempts=run.attempts,
            limit_ms=limit * 1000,
            init_ms=run.init_ms,
        )
        self._clock += run.elapsed
        self._since_prompt += run.elapsed
        reason = _failure(run, limit, "STRING_MAP")
        if not reason and self._since_prompt > CHAIN_LIMIT_SECONDS:
            reason = "CHAIN_LIMIT"
        step.answer = run.payload if isinstance(run.payload, Mapping) else {"raw": str(run.payload)[:200]}
        if reason:
            step.branch, step.note = "Error", reason
        self._record(step)
        if reason:
            raise _Error("NoMatchingError", reason)
        self._external = dict(run.payload)
        if "trackerId" in run.payload and not self.report.tracker_id:
            self.report.tracker_id = str(run.payload["trackerId"])

    def _start_async(self, action: Mapping[str, Any]) -> None:
        parameters = action["Parameters"]
        function, event = self._lambda_event(action)
        invocation = _AsyncInvocation(
            id=str(uuid.uuid4()),
            function=function,
            action=action["Identifier"],
            started_at=self._clock,
            limit=float(parameters["InvocationTimeLimitSeconds"]),
            response_type=str(parameters.get("ResponseValidation", {}).get("ResponseType", "STRING_MAP")),
        )

        self._external = {}  # nothing to read until "Load Lambda result"
        self._heard_since_invoke = []
        step = Step(
            at=self._clock,
            kind="invoke",
            name=function,
            action=action["Identifier"],
            branch="Started",
            limit_ms=invocation.limit * 1000,
        )
        # The block's Error branch: Lambda will not run it at all (no such function, no permission). A refusal
        # later on (throttled retries) is a failed invocation: it returns, and "Load Lambda result" fails.
        dry_run = getattr(self._invoke, "dry_run", None)
        try:
            if dry_run is not None:
                dry_run(function)
        except InvocationRefused as refused:
            step.branch, step.note, step.answer = "Error", "INVOKE_REFUSED", {"refused": str(refused)[:200]}
            self._record(step)
            raise _Error("NoMatchingError", "INVOKE_REFUSED") from None

        def background() -> None:
            invocation.run = self._run_with_retries(function, event, invocation.limit)
            invocation.done.set()

        threading.Thread(target=background, name=f"async-{function}", daemon=True).start()
        self._record(step)
        self._invocations[invocation.id] = invocation
        self._last_invocation_id = invocation.id  # only the most recent asynchronous invocation's id is kept

    def _load_result(self, action: Mapping[str, Any]) -> None:
        invocation_id = self._value(action["Parameters"]["LambdaInvocationId"], required=True)
        invocation = self._invocations.get(str(invocation_id))
        if invocation is None:
            raise _Error("NoMatchingError", "NO_SUCH_INVOCATION")
        returned = invocation.returned_at()
        if invocation.run is None or (returned is not None and returned > self._clock):
            if invocation.run is None and self._clock >= invocation.started_at + invocation.limit:
                raise _Error("NoMatchingError", "TIMEOUT")  # Connect gave up on it; it runs on unheard
            raise _Error("InProgress", "IN_PROGRESS")
        run = invocation.run
        reason = _failure(run, invocation.limit, invocation.response_type)
        step = Step(
            at=self._clock,
            kind="load",
            name=invocation.function,
            action=action["Identifier"],
            duration_ms=run.elapsed * 1000,
            branch="Error" if reason else "Success",
            note=reason,
            attempts=run.attempts,
            limit_ms=invocation.limit * 1000,
            answer=run.payload if isinstance(run.payload, Mapping) else {"raw": str(run.payload)[:200]},
        )
        self._record(step)
        if reason:
            raise _Error("NoMatchingError", reason)
        self._external = dict(run.payload)

    # ---- the Wait block ----------------------------------------------------------------------------------
    def _wait(self, action: Mapping[str, Any]) -> str:
        parameters = action["Parameters"]
        branches = conditions(action)
        invocation: _AsyncInvocation | None = None
        identifier = lambda_event_id(action)
        if identifier is not None:
            # Unset: the action fails. Set but unknown: Connect waits until the time limit (Wait block docs).
            invocation = self._invocations.get(str(self._value(identifier, required=True)))
        started = self._clock
        deadline = started + float(parameters["TimeLimitSeconds"])
        keep_running = parameters.get("ContinueExecution") == "TRUE"
        note: list[str] = []
        real_started = self._real_now()
        outcome = self._hold(branches.get("Continue") if keep_running else None, invocation, deadline, note)
        self._record(
            Step(
                at=started,
                real_at=real_started,
                kind="wait",
                name=outcome,
                action=action["Identifier"],
                duration_ms=(self._clock - started) * 1000,
                note="; ".join(note),
            )
        )
        return branches[outcome]

    def _hold(self, current: str | None, invocation: _AsyncInvocation | None, deadline: float, note: list[str]) -> str:
        """Run the Continue branch (if any) until the invocation returns or the time limit; the Wait's result."""
        while True:
            returned = invocation.returned_at() if invocation is not None else None
            if returned is not None and returned <= self._clock:
                return "LambdaReturned"
            if self._clock >= deadline:
                return "WaitCompleted"
            if current is None:
                # No Continue branch, or it ran out: the contact stays in the Wait, in silence.
                self._pass_time(invocation, deadline, deadline)
                continue
            action = self._actions[current]
            if action["Type"] == LOOP:
                self._enter(current)
                current = self._loop(action)
            elif action["Type"] == PROMPT:
                self._enter(current)
                self._prompt_while_waiting(action, invocation, deadline)
                current = action["Transitions"].get("NextAction")
            else:
                note.append(f"the Continue branch ran out at {current}")
                current = None

    def _prompt_while_waiting(
        self, action: Mapping[str, Any], invocation: _AsyncInvocation | None, deadline: float
    ) -> None:
        text, seconds = self._speech(action)
        began = self._clock
        stop = self._pass_time(invocation, began + seconds, deadline, record=False)
        cut = ""
        if stop < began + seconds:
            cut = "cut at the time limit" if stop >= deadline else "cut: Lambda returned"
        self._played(action, text, stop - began, note=cut)

    def _pass_time(
        self, invocation: _AsyncInvocation | None, until: float, deadline: float, *, record: bool = True
    ) -> float:
        """Let time pass on the call's clock up to ``until`` (a prompt's end) or the Wait's ``deadline``, or to
        the moment the invocation returns, whichever comes first (unless prompts play out); returns that time."""
        began = self._clock
        horizon = min(until, deadline) if not self._prompt_plays_out else until
        waited = 0.0
        if invocation is not None and not invocation.done.is_set():
            # Still running: the call's clock follows the invocation's real time.
            limit_at = invocation.started_at + invocation.limit
            real = min(horizon, limit_at) - invocation.timeline()
            if real > 0:
                real_began = time.monotonic()
                invocation.done.wait(real)
                waited = time.monotonic() - real_began
        returned = invocation.returned_at() if invocation is not None else None
        stop = horizon
        if returned is not None and not self._prompt_plays_out:
            stop = min(horizon, max(began, returned))
        time.sleep(max(0.0, (stop - began) * self._time_scale - waited))
        if record:
            self._clock = stop
        return stop

    # ---- the report --------------------------------------------------------------------------------------
    def _finish(self) -> None:
        report = self.report
        report.attributes = {k: v for k, v in self._attributes.items() if not k.startswith("_")}
        report.outcome = self._attributes.get("holdlineOutcome", "NO_OUTCOME")
        report.error_code = self._attributes.get("holdlineErrorCode", "")
        if report.outcome == "ERROR_BRANCH" and report.error_branches:
            report.error_code = report.error_branches[-1].rsplit(": ", 1)[-1]
        report.caller_hears = " ".join(self._heard_since_invoke)

    def _real_now(self) -> float:
        """Seconds since the call began on this machine's clock (the one the saga runs on)."""
        return time.monotonic() - self._real_began

    def _record(self, step: Step) -> None:
        if step.real_at is None:  # a step is stamped when it begins; most are recorded as they begin
            step.real_at = self._real_now()
        self.report.steps.append(step)
        if self._on_step is not None:
            self._on_step(step)


def _failure(run: _Run, limit: float, response_type: str) -> str:
    """Why Connect takes the Error branch for this run ("" if it does not)."""
    if run.refused:
        return "INVOKE_REFUSED"
    if run.elapsed > limit:
        return "TIMEOUT"
    if run.function_error:
        return "LAMBDA_EXCEPTION"
    if response_type == "STRING_MAP" and not _is_flat_string_map(run.payload):
        return "INVALID_RESPONSE"
    if not isinstance(run.payload, Mapping):  # JSON validation takes nesting, but $.External is an object
        return "INVALID_RESPONSE"
    if len(json.dumps(run.payload).encode()) > MAX_ANSWER_BYTES:
        return "RESPONSE_TOO_LARGE"
    return ""


def _is_flat_string_map(payload: Any) -> bool:
    return isinstance(payload, Mapping) and all(
        isinstance(key, str) and isinstance(value, str) for key, value in payload.items()
    )


def speaking_seconds(markup: str) -> float:
    """How long a prompt plays: words at ~150 a minute (at least a second when it says anything) plus breaks."""
    breaks = sum(float(n) / (1000 if unit == "ms" else 1) for n, unit in _BREAK.findall(markup))
    words = len(_TAG.sub(" ", markup).split())
    return round((max(1.0, words / WORDS_PER_SECOND) if words else 0.0) + breaks, 2)
