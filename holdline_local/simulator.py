"""A simulated Amazon Connect call: an interpreter of the shipped flow (flows/transfer-flow.json).

It runs the flow's actions the way Connect does (the ones the shipped flow uses) and applies Connect's rules:

* before the call, :func:`check_flow` refuses a flow that breaks a rule a real call would trip over: a Lambda
  block with a timeout outside 1..8 s, not synchronous or not ``STRING_MAP``; an action without its Error
  branch; a dangling or unreachable action; two Lambda invocations with no prompt between them; a Lambda's
  Error branch that hangs up without an agent or a callback offer;
* during the call, a Lambda block takes its Error branch on a timeout (its own ``InvocationTimeLimitSeconds``),
  an exception (after Connect's retries, up to three, within the timeout), an answer that is not a flat map of
  strings, or one over 32 KB; and a chain of invocations with no prompt between them past ~20 s fails.

Prompts take simulated time (speech at ~150 words a minute plus SSML breaks) and really sleep, scaled by
``time_scale``. The report lists every step and the path the caller took; the outcome is what the flow wrote
to the contact attribute ``holdlineOutcome`` (as a contact record would show it).
"""

from __future__ import annotations

import copy
import json
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from holdline_local.flows import FLOW_PATH, function_placeholders, load_flow

CONNECT_MAX_TIMEOUT_SECONDS = 8
CHAIN_LIMIT_SECONDS = 20.0
MAX_ANSWER_BYTES = 32 * 1024
CONNECT_RETRIES = 3  # after a returned error, "up to three times" within the block's timeout
WORDS_PER_SECOND = 2.5

# Invoke a function by name with an event; returns (payload, function_error) as Lambda's Invoke API does.
Invoker = Callable[[str, Mapping[str, Any]], tuple[Any, str | None]]

LAMBDA = "InvokeLambdaFunction"
PROMPT = "MessageParticipant"
FALLBACKS = frozenset({"TransferContactToQueue", "CreateCallbackContact"})
TERMINAL = frozenset({"DisconnectParticipant"})
# The Errors each action type must handle (the flow language's catch-alls and documented errors).
REQUIRED_ERRORS: dict[str, frozenset[str]] = {
    LAMBDA: frozenset({"NoMatchingError"}),
    PROMPT: frozenset({"NoMatchingError"}),
    "UpdateContactAttributes": frozenset({"NoMatchingError"}),
    "UpdateContactData": frozenset({"NoMatchingError"}),
    "UpdateContactTargetQueue": frozenset({"NoMatchingError"}),
    "TransferContactToQueue": frozenset({"QueueAtCapacity", "NoMatchingError"}),
    "UpdateContactCallbackNumber": frozenset({"InvalidCallbackNumber", "CallbackNumberNotDialable"}),
    "CreateCallbackContact": frozenset({"NoMatchingError"}),
    "Compare": frozenset({"NoMatchingCondition"}),
    "Loop": frozenset(),
    "UpdateFlowLoggingBehavior": frozenset(),
    "DisconnectParticipant": frozenset(),
}
_JSONPATH = re.compile(r"\$\.[A-Za-z][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*")
_BREAK = re.compile(r'<break\s+time="(\d+(?:\.\d+)?)(ms|s)"\s*/>')
_TAG = re.compile(r"<[^>]+>")


class FlowRuleViolation(Exception):
    """The flow breaks one of Connect's rules (or Holdline's): a real call would fail on it."""

    def __init__(self, violations: list[str]) -> None:
        super().__init__("; ".join(violations))
        self.violations = violations


# ---- static rules ------------------------------------------------------------------------------------------
def _transitions(action: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(kind, target) of every transition: kind is "next", "condition", "nomatch" or "error"."""
    transitions = action.get("Transitions", {})
    found = [("next", transitions["NextAction"])] if transitions.get("NextAction") else []
    found += [("condition", c["NextAction"]) for c in transitions.get("Conditions", [])]
    for error in transitions.get("Errors", []):
        kind = "nomatch" if error.get("ErrorType") == "NoMatchingCondition" else "error"
        found.append((kind, error["NextAction"]))
    return found


def check_flow(flow: Mapping[str, Any]) -> list[str]:
    """Every rule the flow breaks, as readable sentences; empty when the flow is fit to run."""
    actions = {a["Identifier"]: a for a in flow.get("Actions", [])}
    problems: list[str] = []
    if flow.get("StartAction") not in actions:
        problems.append(f"StartAction {flow.get('StartAction')!r} is not an action")
    for name, action in actions.items():
        kind = action.get("Type")
        if kind not in REQUIRED_ERRORS:
            problems.append(f"{name}: action type {kind!r} is not one the simulator knows")
            continue
        for _, target in _transitions(action):
            if target not in actions:
                problems.append(f"{name}: transition to missing action {target!r}")
        handled = {e.get("ErrorType") for e in action.get("Transitions", {}).get("Errors", [])}
        for missing in sorted(REQUIRED_ERRORS[kind] - handled):
            problems.append(f"{name}: no {missing} branch")
        if kind not in TERMINAL | {"Compare", "Loop"} and not action.get("Transitions", {}).get("NextAction"):
            problems.append(f"{name}: no NextAction")
        if kind == LAMBDA:
            problems += _lambda_rules(name, action.get("Parameters", {}))
    if problems:
        return problems  # the graph rules below assume a well-formed graph
    problems += _unreachable(flow, actions)
    problems += _chains_without_prompt(actions)
    problems += _error_branches_without_fallback(actions)
    return problems


def _lambda_rules(name: str, parameters: Mapping[str, Any]) -> list[str]:
    problems = []
    limit = parameters.get("InvocationTimeLimitSeconds")
    if not (isinstance(limit, str | int) and str(limit).isdigit() and 1 <= int(limit) <= CONNECT_MAX_TIMEOUT_SECONDS):
        problems.append(f"{name}: InvocationTimeLimitSeconds {limit!r} is not a whole number of seconds in 1..8")
    if parameters.get("InvocationType", "SYNCHRONOUS") != "SYNCHRONOUS":
        problems.append(f"{name}: InvocationType must be SYNCHRONOUS (the flow reads the answer at once)")
    if parameters.get("ResponseValidation", {}).get("ResponseType") != "STRING_MAP":
        problems.append(f"{name}: ResponseValidation.ResponseType must be STRING_MAP (answers are flat maps)")
    return problems


def _unreachable(flow: Mapping[str, Any], actions: Mapping[str, Mapping[str, Any]]) -> list[str]:
    seen: set[str] = set()
    todo = [str(flow["StartAction"])]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += [target for _, target in _transitions(actions[name])]
    return [f"{name}: unreachable from StartAction" for name in actions if name not in seen]


def _chains_without_prompt(actions: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """No path from one Lambda block to another (itself included) that does not play a prompt in between.

    A prompt counts only when it played: its Error branch does not reset Connect's chain limit.
    """
    problems = []
    for start, action in actions.items():
        if action["Type"] != LAMBDA:
            continue
        seen: set[str] = set()
        todo = [target for kind, target in _transitions(action) if kind == "next"]  # an Error branch has no answer
        todo += [target for kind, target in _transitions(action) if kind == "error"]
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            current = actions[name]
            if current["Type"] == LAMBDA:
                problems.append(f"{start} -> {name}: two Lambda invocations with no prompt between them")
                continue
            for kind, target in _transitions(current):
                if current["Type"] == PROMPT and kind == "next":
                    continue  # the prompt played: the chain ends here
                todo.append(target)
    return problems


def _error_branches_without_fallback(actions: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """A Lambda block's Error branch, followed along NextAction, must reach an agent queue or a callback
    (or go on to the next Lambda, as the optional configuration lookup does): never just hang up."""
    problems = []
    for name, action in actions.items():
        if action["Type"] != LAMBDA:
            continue
        for kind, target in _transitions(action):
            if kind != "error":
                continue
            seen: set[str] = set()
            current: str | None = target
            reached = False
            while current is not None and current not in seen:
                seen.add(current)
                kind_here = actions[current]["Type"]
                if kind_here in FALLBACKS or kind_here == LAMBDA:
                    reached = True
                    break
                current = actions[current].get("Transitions", {}).get("NextAction")
            if not reached:
                problems.append(f"{name}: its Error branch ends the call without an agent queue or a callback")
    return problems


# ---- the report --------------------------------------------------------------------------------------------
@dataclass
class Step:
    at: float  # seconds since the call began (simulated clock: prompts count in full)
    kind: str  # "invoke" | "prompt"
    name: str  # the function's logical ID, or the prompt's text
    action: str = ""  # the flow action's Identifier
    duration_ms: float = 0.0
    answer: Mapping[str, Any] | None = None
    branch: str = ""  # "Success" | "Error"
    note: str = ""
    attempts: int = 1
    limit_ms: float = 0.0


@dataclass
class CallReport:
    contact_id: str
    steps: list[Step] = field(default_factory=list)
    path: list[str] = field(default_factory=list)  # every action the caller went through, in order
    outcome: str = ""  # the flow's holdlineOutcome: SUCCEEDED, FAILED, REJECTED, ERROR, ERROR_BRANCH, HOLD_EXCEEDED
    error_code: str = ""
    ending: str = ""  # DISCONNECTED | QUEUED_FOR_AGENT | CALLBACK_CREATED
    caller_hears: str = ""
    tracker_id: str = ""
    error_branches: list[str] = field(default_factory=list)  # "<action>: <reason>" for every Error branch taken
    attributes: dict[str, str] = field(default_factory=dict)

    @property
    def completed(self) -> bool:
        """The call reached a final outcome through the flow's normal path (no Error branch, not stuck)."""
        return self.outcome in {"SUCCEEDED", "FAILED", "REJECTED"}

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["completed"] = self.completed
        data["invocations"] = sum(1 for step in self.steps if step.kind == "invoke")
        return data


class _Error(Exception):
    def __init__(self, error_type: str, reason: str) -> None:
        super().__init__(reason)
        self.error_type = error_type
        self.reason = reason


# ---- the interpreter ---------------------------------------------------------------------------------------
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
        self._event = copy.deepcopy(dict(event))
        contact = self._event.setdefault("Details", {}).setdefault("ContactData", {})
        self._contact: dict[str, Any] = contact
        self._attributes: dict[str, str] = {str(k): str(v) for k, v in (contact.get("Attributes") or {}).items()}
        caller_input = self._event["Details"].get("Parameters") or {}
        self._attributes.update({str(k): str(v) for k, v in caller_input.items()})
        self._external: dict[str, Any] = {}
        self._loops: dict[str, int] = {}
        self._target_queue = ""
        self._clock = 0.0
        self._since_prompt = 0.0
        self._heard_since_invoke: list[str] = []
        self.report = CallReport(contact_id=str(contact.get("ContactId", "")))

    # ---- running -----------------------------------------------------------------------------------------
    def run(self) -> CallReport:
        current: str | None = self._flow["StartAction"]
        while current is not None:
            if len(self.report.path) >= self._max_actions:
                raise RuntimeError(f"the flow ran {self._max_actions} actions without ending: a loop with no exit?")
            self.report.path.append(current)
            action = self._actions[current]
            try:
                current = self._perform(action)
            except _Error as error:
                current = self._error_branch(action, error)
        self._finish()
        return self.report

    def _perform(self, action: Mapping[str, Any]) -> str | None:
        kind = action["Type"]
        parameters = action.get("Parameters", {})
        transitions = action.get("Transitions", {})
        following = transitions.get("NextAction")
        if kind == LAMBDA:
            self._invoke_lambda(action)
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
        elif kind == "Loop":
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
        conditions = {c["Condition"]["Operands"][0]: c["NextAction"] for c in action["Transitions"]["Conditions"]}
        if visits < count:
            self._loops[name] = visits + 1
            return str(conditions["ContinueLooping"])
        self._loops[name] = 0  # Connect resets the count once it has answered DoneLooping
        return str(conditions["DoneLooping"])

    # ---- values ------------------------------------------------------------------------------------------
    def _lookup(self, path: str) -> Any:
        parts = path[2:].split(".")
        roots: dict[str, Any] = {**self._contact, "Attributes": self._attributes, "External": self._external}
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

    # ---- Connect's rules ---------------------------------------------------------------------------------
    def _prompt(self, action: Mapping[str, Any]) -> None:
        parameters = action["Parameters"]
        markup = str(self._value(parameters.get("SSML") or parameters.get("Text") or "", required=False))
        seconds = _speaking_seconds(markup)
        text = " ".join(_TAG.sub("", markup).split())
        self._record(
            Step(at=self._clock, kind="prompt", name=text, action=action["Identifier"], duration_ms=seconds * 1000)
        )
        time.sleep(seconds * self._time_scale)
        self._clock += seconds
        self._since_prompt = 0.0
        self._heard_since_invoke.append(text)

    def _invoke_lambda(self, action: Mapping[str, Any]) -> None:
        parameters = action["Parameters"]
        placeholder = str(parameters["LambdaFunctionARN"]).removeprefix("${").removesuffix("}")
        function = self._functions.get(placeholder, placeholder)
        limit = float(parameters["InvocationTimeLimitSeconds"])
        arguments = {}
        for key, value in (parameters.get("LambdaInvocationAttributes") or {}).items():
            resolved = self._value(value, required=False)
            if resolved is not None:
                arguments[key] = str(resolved)
        event = copy.deepcopy(self._event)
        event["Details"]["ContactData"] = {**copy.deepcopy(self._contact), "Attributes": dict(self._attributes)}
        event["Details"]["Parameters"] = arguments
        self._external = {}  # $.External holds only the last Lambda's answer, and nothing after an error
        self._heard_since_invoke = []
        elapsed, attempts = 0.0, 0
        payload: Any = None
        function_error: str | None = None
        while True:
            attempts += 1
            started = time.perf_counter()
            payload, function_error = self._invoke(function, event)
            elapsed += time.perf_counter() - started + self._latency(function)
            # Connect retries a returned error, up to three times, while the block's time lasts.
            if not function_error or attempts > CONNECT_RETRIES or elapsed >= limit:
                break
        step = Step(
            at=self._clock,
            kind="invoke",
            name=function,
            action=action["Identifier"],
            duration_ms=elapsed * 1000,
            branch="Success",
            attempts=attempts,
            limit_ms=limit * 1000,
        )
        self._clock += elapsed
        self._since_prompt += elapsed
        reason = ""
        if elapsed > limit:
            reason = "TIMEOUT"
        elif function_error:
            reason = "LAMBDA_EXCEPTION"
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
            raise _Error("NoMatchingError", reason)
        assert isinstance(payload, Mapping)
        self._external = dict(payload)
        if "trackerId" in payload and not self.report.tracker_id:
            self.report.tracker_id = str(payload["trackerId"])

    def _finish(self) -> None:
        report = self.report
        report.attributes = {k: v for k, v in self._attributes.items() if not k.startswith("_")}
        report.outcome = self._attributes.get("holdlineOutcome", "NO_OUTCOME")
        report.error_code = self._attributes.get("holdlineErrorCode", "")
        if report.outcome == "ERROR_BRANCH" and report.error_branches:
            report.error_code = report.error_branches[-1].rsplit(": ", 1)[-1]
        report.caller_hears = " ".join(self._heard_since_invoke)

    def _record(self, step: Step) -> None:
        self.report.steps.append(step)
        if self._on_step is not None:
            self._on_step(step)


def _is_flat_string_map(payload: Any) -> bool:
    return isinstance(payload, Mapping) and all(
        isinstance(key, str) and isinstance(value, str) for key, value in payload.items()
    )


def _speaking_seconds(markup: str) -> float:
    breaks = sum(float(n) / (1000 if unit == "ms" else 1) for n, unit in _BREAK.findall(markup))
    words = len(_TAG.sub(" ", markup).split())
    return round(max(1.0, words / WORDS_PER_SECOND) + breaks, 2)


def invoked_functions(steps: Iterable[Step]) -> list[str]:
    return [step.name for step in steps if step.kind == "invoke"]


def format_step(step: Step) -> str:
    if step.kind == "prompt":
        return f"  t={step.at:7.2f}s  ♪ {step.action:<20} {step.duration_ms / 1000:4.1f}s  “{step.name}”"
    answer = step.answer or {}
    shown = " ".join(f"{k}={v}" for k, v in answer.items() if k not in {"errorMessage", "greeting", "holdPrompt"})
    budget = f"{step.duration_ms:7.1f} ms of {step.limit_ms:.0f} ms"
    retries = f" ({step.attempts} attempts)" if step.attempts > 1 else ""
    branch = "" if step.branch == "Success" else f"  → Error branch ({step.note})"
    return f"  t={step.at:7.2f}s  ▶ {step.name:<20} {budget}{retries}  {shown}{branch}"
