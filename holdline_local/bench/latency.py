"""Settlement → the caller starts hearing the outcome: the polling loop against the outcome waiter, side by side.

Each call runs the shipped flow from its starter on, prompts in real time, against the local stack's real
status, outcome-waiter and results functions. The starter is a stand-in that writes the tracker row RUNNING
and answers STARTED; the saga is a timer that makes the row final (the UpdateItem the saga's last state makes)
a chosen time later. Settlement times are spread evenly across one hold prompt (the flow's default hold
message with its pause), so every phase of a polling cycle is hit equally. The latency is from the moment
that write is sent to the moment "Thank you for holding." starts (the call then hangs up: what follows is the
same in both designs).

Three designs, interleaved in one run:

* ``polling``: the flow with the outcome waiter cut out (as before issue 14): hold prompt, status, again;
* ``async``: the shipped flow, under the simulator's reading that the "Lambda returned" event cuts the hold
  prompt (holdline_local/simulator/__init__.py);
* ``async, prompt plays out``: the shipped flow under the other reading (the event waits for the prompt's end).

Before any figure: every call reached the outcome, the async calls never fell back to polling, and the polling
calls polled.
"""

from __future__ import annotations

import copy
import statistics
import threading
import time
import uuid
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from botocore.config import Config

from holdline_local.bench.scale import _session_client
from holdline_local.cli import _connect_like_config, _lambda_invoker
from holdline_local.flows import load_flow
from holdline_local.simulator import SimulatedCall, Step, check_flow, speaking_seconds
from holdline_local.simulator.rules import transitions
from holdline_local.stack import LocalStack

HOLD_PROMPT = "Your transfer is in progress. Please stay on the line."  # the flow's default hold message
ANNOUNCE = "Announce result"
DESIGNS = {
    "polling": {"polling": True, "prompt_plays_out": False},
    "async": {"polling": False, "prompt_plays_out": False},
    "async, prompt plays out": {"polling": False, "prompt_plays_out": True},
}
#: The first settlement comes this long after the starter answered (the saga's first steps).
FIRST_SETTLEMENT_SECONDS = 1.0


def hold_prompt_seconds(flow: Mapping[str, Any]) -> float:
    """How long the polling loop's hold prompt plays with the default hold message."""
    hold = next(a for a in flow["Actions"] if a["Identifier"] == "Play hold message")
    return speaking_seconds(str(hold["Parameters"]["SSML"]).replace("$.Attributes.holdPrompt", HOLD_PROMPT))


def design_flow(*, polling: bool, from_starter_to_outcome: bool = False) -> dict[str, Any]:
    """The shipped flow, or with ``polling`` the flow as it was before the outcome waiter (the tracker id goes
    straight to the polling loop); ``from_starter_to_outcome`` starts at the starter and hangs up as the outcome
    begins. Unreachable actions are dropped, so it keeps every rule."""
    flow = copy.deepcopy(load_flow())
    actions = {a["Identifier"]: a for a in flow["Actions"]}
    if from_starter_to_outcome:
        flow["StartAction"] = "Start transfer"
        actions[ANNOUNCE]["Transitions"] = {
            "NextAction": "Hang up",
            "Errors": [{"NextAction": "Hang up", "ErrorType": "NoMatchingError"}],
        }
    if polling:
        actions["Keep tracker id"]["Transitions"]["NextAction"] = "Hold loop"
    reachable: set[str] = set()
    todo = [flow["StartAction"]]
    while todo:
        name = todo.pop()
        if name not in reachable:
            reachable.add(name)
            todo += [target for _, target in transitions(actions[name])]
    flow["Actions"] = [a for a in flow["Actions"] if a["Identifier"] in reachable]
    problems = check_flow(flow)
    if problems:
        raise RuntimeError(f"the bench flow breaks a rule: {problems}")
    return flow


@dataclass
class _Call:
    design: str
    settle_after: float
    tracker_id: str = field(default_factory=lambda: f"transfer-{uuid.uuid4().hex}")
    settled_at: float | None = None
    announced_at: float | None = None
    report: Any = None
    error: str = ""


class _Harness:
    """The stand-in starter and the timed settlements; every other function is the local stack's own."""

    def __init__(self, stack: LocalStack, pool: int) -> None:
        self._ddb = _session_client(stack, "dynamodb", pool)
        lam = _session_client(stack, "lambda", pool, _connect_like_config().merge(Config(max_pool_connections=pool)))
        self._real = _lambda_invoker(lam)

    def invoker(self, call: _Call) -> Any:
        def invoke(function: str, event: Mapping[str, Any]) -> tuple[Any, str | None]:
            if function != "StarterFunction":
                answer: tuple[Any, str | None] = self._real(function, event)
                return answer
            self._start(call)
            return {"status": "STARTED", "trackerId": call.tracker_id, "nextPollSeconds": "3"}, None

        invoke.dry_run = self._real.dry_run  # type: ignore[attr-defined]
        return invoke

    def _start(self, call: _Call) -> None:
        now = int(time.time())
        item = {
            "trackerId": {"S": call.tracker_id},
            "operation": {"S": "transfer"},
            "status": {"S": "RUNNING"},
            "step": {"S": "DEBITING"},
            "stepsDone": {"N": "0"},
            "stepsTotal": {"N": "3"},
            "createdAt": {"N": str(now)},
            "expiresAt": {"N": str(now + 3600)},
            "request": {"M": {"amount": {"S": "1.00"}, "currency": {"S": "USD"}}},
        }
        self._ddb.put_item(TableName="TrackerTable", Item=item)
        timer = threading.Timer(call.settle_after, self._settle, args=(call,))
        timer.daemon = True
        timer.start()

    def _settle(self, call: _Call) -> None:
        call.settled_at = time.monotonic()
        self._ddb.update_item(
            TableName="TrackerTable",
            Key={"trackerId": {"S": call.tracker_id}},
            UpdateExpression="SET #s = :s, step = :d, stepsDone = :n, confirmationNumber = :c",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={
                ":s": {"S": "SUCCEEDED"},
                ":d": {"S": "DONE"},
                ":n": {"N": "3"},
                ":c": {"S": "HL0000000000"},
            },
        )


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _event() -> dict[str, Any]:
    contact = str(uuid.uuid4())
    return {
        "Name": "ContactFlowEvent",
        "Details": {
            "ContactData": {
                "ContactId": contact,
                "InitialContactId": contact,
                "Attributes": {"holdPrompt": HOLD_PROMPT, "language": "en-US"},
            },
            "Parameters": {"fromAccount": "CHK-00011111", "toAccount": "SAV-00022222", "amount": "1.00"},
        },
    }


def _problem(call: _Call) -> str:
    report = call.report
    if call.error:
        return call.error
    if report is None or ANNOUNCE not in report.path or call.announced_at is None or call.settled_at is None:
        return "never reached the outcome"
    invoked = [s.name for s in report.steps if s.kind == "invoke"]
    if call.design == "polling" and "StatusFunction" not in invoked:
        return "the polling design did not poll"
    if call.design != "polling" and ("holdMode" in report.attributes or report.error_branches):
        return f"fell back to polling: {report.error_branches}"
    if call.announced_at < call.settled_at:
        return "the outcome was announced before it settled"
    return ""


def run(stack: LocalStack, *, offsets: int = 32, workers: int = 6) -> dict[str, Any]:
    flows = {
        design: design_flow(polling=bool(options["polling"]), from_starter_to_outcome=True)
        for design, options in DESIGNS.items()
    }
    prompt = hold_prompt_seconds(flows["polling"])
    harness = _Harness(stack, pool=4 * workers)
    calls = [
        _Call(design, FIRST_SETTLEMENT_SECONDS + prompt * i / offsets) for i in range(offsets) for design in DESIGNS
    ]

    def one(call: _Call) -> None:
        def on_step(step: Step) -> None:
            if step.action == ANNOUNCE and call.announced_at is None:
                call.announced_at = time.monotonic()

        try:
            call.report = SimulatedCall(
                harness.invoker(call),
                _event(),
                flow=flows[call.design],
                time_scale=1.0,
                on_step=on_step,
                prompt_plays_out=bool(DESIGNS[call.design]["prompt_plays_out"]),
            ).run()
        except Exception as exc:  # reported as a problem: the part still reports the others
            call.error = f"{type(exc).__name__}: {exc}"

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(one, calls))
    problems = [f"{c.design}, settled after {c.settle_after:.2f} s: {p}" for c in calls if (p := _problem(c))]
    out: dict[str, Any] = {
        "hold_prompt_s": prompt,
        "offsets": offsets,
        "first_settlement_s": FIRST_SETTLEMENT_SECONDS,
        "workers": workers,
        "wall_s": time.monotonic() - started,
        "ok": not problems,
        "problems": problems[:20],
        "designs": {},
    }
    for design in DESIGNS:
        mine = [c for c in calls if c.design == design and not _problem(c)]
        seconds = [c.announced_at - c.settled_at for c in mine if c.announced_at and c.settled_at]
        summary: dict[str, Any] = {"n": len(seconds), "seconds": sorted(round(x, 3) for x in seconds)}
        if seconds:
            summary |= {
                "p50_s": statistics.median(seconds),
                "p95_s": _percentile(seconds, 0.95),
                "max_s": max(seconds),
            }
        loads = [s for c in mine for s in c.report.steps if s.kind == "load"]
        if loads:
            summary["waiter_held_s"] = statistics.median(s.duration_ms / 1000 for s in loads)
            summary["waiter_reads"] = statistics.median(float((s.answer or {}).get("reads", 0)) for s in loads)
        polls = [sum(1 for s in c.report.steps if s.name == "StatusFunction") for c in mine]
        summary["polls_per_call"] = statistics.mean(polls) if polls else 0.0
        out["designs"][design] = summary
    return out
