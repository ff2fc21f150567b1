"""Connect's static rules (and Holdline's own): what a flow must satisfy before a call runs through it.

:func:`check_flow` lists every rule a flow breaks, as sentences; the interpreter refuses such a flow. Sources:

* "AWS Lambda function" block, https://docs.aws.amazon.com/connect/latest/adminguide/invoke-lambda-function-block.html:
  SYNCHRONOUS blocks wait at most 8 s, ASYNCHRONOUS ones 60 s (the flow moves on at once); the response is
  validated as STRING_MAP or JSON; its "Load Lambda result" action reads an asynchronous invocation's answer
  by ``$.LambdaInvocation.InvocationId`` (the most recent asynchronous invocation only).
* "Wait" block, https://docs.aws.amazon.com/connect/latest/adminguide/wait.html: inbound and customer-queue
  flows only; for voice, only with "Keep running while waiting" (the Continue branch, e.g. a hold prompt) or an
  event-based wait ("Lambda returned"); a wrong invocation id waits until the time limit. A Wait cannot sit in
  a Continue branch.
* The flow-language reference (https://docs.aws.amazon.com/connect/latest/APIReference/flow-control-actions-wait.html)
  lags the console: it knows neither the asynchronous mode nor the Lambda event. The keys used here are those of
  a console export of an asynchronous flow (github.com/DanBloy/blog-ecr, async-execution/contact-flow/
  AsyncExecution.json): ``Wait`` with ``TimeLimitSeconds``, ``ContinueExecution``, ``InterruptibleEvents.
  LambdaReturned.AsyncLambdaCompletionEvent.Identifier`` and conditions Continue / LambdaReturned /
  WaitCompleted; ``LoadLambdaFunctionResult`` with ``LambdaInvocationId`` and errors NoMatchingError, InProgress.

Holdline's own rules on top (each is a way a real call went wrong, or could): every Error branch handled; no
two synchronous invocations without a prompt between them (Connect's ~20 s chain limit); a Lambda's Error
branch never just hangs up; an asynchronous invocation is waited for by the very next action; the Continue
branch only plays prompts (the undocumented behaviour is written down in holdline_local/simulator/__init__.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

CONNECT_MAX_TIMEOUT_SECONDS = 8
CONNECT_MAX_ASYNC_TIMEOUT_SECONDS = 60
MAX_WAIT_SECONDS = 7 * 24 * 3600
INVOCATION_ID = "$.LambdaInvocation.InvocationId"

LAMBDA = "InvokeLambdaFunction"
PROMPT = "MessageParticipant"
WAIT = "Wait"
LOAD = "LoadLambdaFunctionResult"
LOOP = "Loop"
FALLBACKS = frozenset({"TransferContactToQueue", "CreateCallbackContact"})
TERMINAL = frozenset({"DisconnectParticipant"})
#: What a Continue branch may hold: it can be cut at any moment (see the package docstring), so nothing in it
#: may matter to the rest of the flow, and it must keep the caller company until the Wait ends.
CONTINUE_BRANCH_TYPES = frozenset({PROMPT, LOOP})
#: Flow types (the flow's Metadata.type) in which a Wait block may run.
WAIT_FLOW_TYPES = frozenset({"contactFlow", "customerQueue"})
# The Errors each action type must handle (the flow language's catch-alls and documented errors).
REQUIRED_ERRORS: dict[str, frozenset[str]] = {
    LAMBDA: frozenset({"NoMatchingError"}),
    PROMPT: frozenset({"NoMatchingError"}),
    WAIT: frozenset({"NoMatchingError"}),
    LOAD: frozenset({"NoMatchingError", "InProgress"}),
    "UpdateContactAttributes": frozenset({"NoMatchingError"}),
    "UpdateContactData": frozenset({"NoMatchingError"}),
    "UpdateContactTargetQueue": frozenset({"NoMatchingError"}),
    "TransferContactToQueue": frozenset({"QueueAtCapacity", "NoMatchingError"}),
    "UpdateContactCallbackNumber": frozenset({"InvalidCallbackNumber", "CallbackNumberNotDialable"}),
    "CreateCallbackContact": frozenset({"NoMatchingError"}),
    "Compare": frozenset({"NoMatchingCondition"}),
    LOOP: frozenset(),
    "UpdateFlowLoggingBehavior": frozenset(),
    "DisconnectParticipant": frozenset(),
}
# Actions that branch on Conditions only and need no NextAction.
_CONDITIONAL = frozenset({"Compare", LOOP, WAIT})


class FlowRuleViolation(Exception):
    """The flow breaks one of Connect's rules (or Holdline's): a real call would fail on it."""

    def __init__(self, violations: list[str]) -> None:
        super().__init__("; ".join(violations))
        self.violations = violations


def transitions(action: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(kind, target) of every transition: kind is "next", "condition", "nomatch" or "error"."""
    found_transitions = action.get("Transitions", {})
    found = [("next", found_transitions["NextAction"])] if found_transitions.get("NextAction") else []
    found += [("condition", c["NextAction"]) for c in found_transitions.get("Conditions", [])]
    for error in found_transitions.get("Errors", []):
        kind = "nomatch" if error.get("ErrorType") == "NoMatchingCondition" else "error"
        found.append((kind, error["NextAction"]))
    return found


def conditions(action: Mapping[str, Any]) -> dict[str, str]:
    """First operand -> target of each condition (how Loop and Wait name their branches)."""
    return {c["Condition"]["Operands"][0]: c["NextAction"] for c in action.get("Transitions", {}).get("Conditions", [])}


def is_async(action: Mapping[str, Any]) -> bool:
    return action.get("Type") == LAMBDA and action.get("Parameters", {}).get("InvocationType") == "ASYNCHRONOUS"


def lambda_event_id(action: Mapping[str, Any]) -> str | None:
    """The invocation id a Wait's "Lambda returned" event waits for, if it has one."""
    event = action.get("Parameters", {}).get("InterruptibleEvents", {}).get("LambdaReturned")
    if not isinstance(event, Mapping):
        return None
    identifier = event.get("AsyncLambdaCompletionEvent", {}).get("Identifier")
    return str(identifier) if identifier is not None else None


def _whole_seconds(value: Any, low: int, high: int) -> bool:
    return isinstance(value, str | int) and str(value).isdigit() and low <= int(value) <= high


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
        for _, target in transitions(action):
            if target not in actions:
                problems.append(f"{name}: transition to missing action {target!r}")
        handled = {e.get("ErrorType") for e in action.get("Transitions", {}).get("Errors", [])}
        for missing in sorted(REQUIRED_ERRORS[kind] - handled):
            problems.append(f"{name}: no {missing} branch")
        if kind not in TERMINAL | _CONDITIONAL and not action.get("Transitions", {}).get("NextAction"):
            problems.append(f"{name}: no NextAction")
        if kind == LAMBDA:
            problems += _lambda_rules(name, action.get("Parameters", {}))
        elif kind == WAIT:
            problems += _wait_rules(name, action, flow)
        elif kind == LOAD and not str(action.get("Parameters", {}).get("LambdaInvocationId", "")).startswith("$."):
            problems.append(f"{name}: LambdaInvocationId must be a reference such as {INVOCATION_ID}")
    if problems:
        return problems  # the graph rules below assume a well-formed graph
    problems += _unreachable(flow, actions)
    problems += _async_invocations_waited_for(actions)
    problems += _continue_branches(actions)
    problems += _chains_without_prompt(actions)
    problems += _error_branches_without_fallback(actions)
    return problems


def _lambda_rules(name: str, parameters: Mapping[str, Any]) -> list[str]:
    problems = []
    mode = parameters.get("InvocationType", "SYNCHRONOUS")
    limit = parameters.get("InvocationTimeLimitSeconds")
    response = parameters.get("ResponseValidation", {}).get("ResponseType")
    if mode == "SYNCHRONOUS":
        if not _whole_seconds(limit, 1, CONNECT_MAX_TIMEOUT_SECONDS):
            problems.append(f"{name}: InvocationTimeLimitSeconds {limit!r} is not a whole number of seconds in 1..8")
        # Holdline: a synchronous answer is read at once by Compare blocks, so it must be a flat map.
        if response != "STRING_MAP":
            problems.append(f"{name}: ResponseValidation.ResponseType must be STRING_MAP (answers are flat maps)")
    elif mode == "ASYNCHRONOUS":
        if not _whole_seconds(limit, 1, CONNECT_MAX_ASYNC_TIMEOUT_SECONDS):
            problems.append(f"{name}: InvocationTimeLimitSeconds {limit!r} is not a whole number of seconds in 1..60")
        if response not in {"STRING_MAP", "JSON"}:
            problems.append(f"{name}: ResponseValidation.ResponseType must be STRING_MAP or JSON")
    else:
        problems.append(f"{name}: InvocationType must be SYNCHRONOUS or ASYNCHRONOUS")
    return problems


def _wait_rules(name: str, action: Mapping[str, Any], flow: Mapping[str, Any]) -> list[str]:
    problems = []
    parameters = action.get("Parameters", {})
    if not _whole_seconds(parameters.get("TimeLimitSeconds"), 1, MAX_WAIT_SECONDS):
        problems.append(f"{name}: TimeLimitSeconds {parameters.get('TimeLimitSeconds')!r} is not in 1..604800")
    keeps_running = parameters.get("ContinueExecution") == "TRUE"
    event = lambda_event_id(action)
    if not keeps_running and event is None:
        problems.append(f"{name}: on a voice call a Wait needs ContinueExecution TRUE or a LambdaReturned event")
    if flow.get("Metadata", {}).get("type", "contactFlow") not in WAIT_FLOW_TYPES:
        problems.append(f"{name}: a Wait runs only in inbound and customer-queue flows")
    required = {"WaitCompleted"} | ({"Continue"} if keeps_running else set()) | ({"LambdaReturned"} if event else set())
    present = set(conditions(action))
    if present != required:
        problems.append(f"{name}: conditions must be exactly {sorted(required)}, not {sorted(present)}")
    return problems


def _unreachable(flow: Mapping[str, Any], actions: Mapping[str, Mapping[str, Any]]) -> list[str]:
    seen: set[str] = set()
    todo = [str(flow["StartAction"])]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += [target for _, target in transitions(actions[name])]
    return [f"{name}: unreachable from StartAction" for name in actions if name not in seen]


def _async_invocations_waited_for(actions: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """An asynchronous invocation's NextAction is a Wait on ``$.LambdaInvocation.InvocationId``, with a time
    limit no shorter than the invocation's: only the most recent id is kept, so anything in between could lose
    it, and a Wait that gives up first would leave the caller's fallback racing a live invocation."""
    problems = []
    for name, action in actions.items():
        if not is_async(action):
            continue
        following = actions[action["Transitions"]["NextAction"]]
        if following["Type"] != WAIT or lambda_event_id(following) != INVOCATION_ID:
            problems.append(f"{name}: an asynchronous invocation must be followed by a Wait on {INVOCATION_ID}")
            continue
        wait_limit = int(following["Parameters"]["TimeLimitSeconds"])
        if wait_limit < int(action["Parameters"]["InvocationTimeLimitSeconds"]):
            problems.append(f"{name}: the Wait's TimeLimitSeconds is shorter than the invocation's limit")
    return problems


def _continue_branches(actions: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """A Continue branch holds only prompts and loops, all its transitions stay inside it (it can never run out
    before the Wait ends), and every cycle plays a prompt (no instant loop)."""
    problems = []
    for name, action in actions.items():
        start = conditions(action).get("Continue") if action["Type"] == WAIT else None
        if start is None:
            continue
        branch: set[str] = set()
        todo = [start]
        while todo:
            current = todo.pop()
            if current in branch:
                continue
            branch.add(current)
            kind = actions[current]["Type"]
            if kind == WAIT:
                problems.append(f"{name}: a Wait cannot sit in a Continue branch ({current})")
            elif kind not in CONTINUE_BRANCH_TYPES:
                problems.append(f"{name}: its Continue branch may only play prompts, not {kind} ({current})")
            else:
                todo += [target for _, target in transitions(actions[current])]
        loops = {n for n in branch if actions[n]["Type"] == LOOP}
        if _has_cycle(loops, actions):
            problems.append(f"{name}: its Continue branch loops without playing a prompt")
    return problems


def _has_cycle(nodes: set[str], actions: Mapping[str, Mapping[str, Any]]) -> bool:
    """Is there a cycle among ``nodes`` alone (following their transitions)?"""
    state: dict[str, int] = {}

    def visit(node: str) -> bool:
        state[node] = 1
        for _, target in transitions(actions[node]):
            if target in nodes and (state.get(target) == 1 or (target not in state and visit(target))):
                return True
        state[node] = 2
        return False

    return any(node not in state and visit(node) for node in nodes)


def _chains_without_prompt(actions: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """No path from one synchronous Lambda block to another (itself included) that does not play a prompt.

    A prompt counts only when it played: its Error branch does not reset Connect's chain limit. An asynchronous
    invocation neither starts nor ends a chain: the flow moves on at once, so it adds no silence.
    """
    problems = []
    for start, action in actions.items():
        if action["Type"] != LAMBDA or is_async(action):
            continue
        seen: set[str] = set()
        todo = [target for kind, target in transitions(action) if kind in {"next", "error"}]
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            current = actions[name]
            if current["Type"] == LAMBDA and not is_async(current):
                problems.append(f"{start} -> {name}: two Lambda invocations with no prompt between them")
                continue
            for kind, target in transitions(current):
                if current["Type"] == PROMPT and kind == "next":
                    continue  # the prompt played: the chain ends here
                todo.append(target)
    return problems


def _error_branches_without_fallback(actions: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """A Lambda block's (or a Lambda result's) Error branch, followed along NextAction, must reach an agent
    queue or a callback (or go on to another Lambda, as the optional configuration lookup and the fallback from
    the outcome waiter to the polling loop do): never just hang up."""
    problems = []
    for name, action in actions.items():
        if action["Type"] not in {LAMBDA, LOAD}:
            continue
        for kind, target in transitions(action):
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
