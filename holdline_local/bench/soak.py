"""Overload soak (issue 12): calls arrive faster than the stack can absorb them; then arrivals stop, the saga's
own retries run out, the reconciler (status change events) and the sweeper (run as its schedule would, once
its window has passed) finish, and every transfer is judged against what its caller was told.

Under overload some callers hear an apology or a timeout: that is allowed. What is not:

* a caller told a **wrong outcome**: "it went through" when it did not, "it failed" or "it did not start"
  when the money moved (a caller who believes that calls back and pays twice);
* a transfer **debited and forgotten**: money out of the source with neither the transfer succeeded, nor the
  debit refunded, nor the row flagged for a person (its failure event says ``manualReviewRequired``: REFUND_PENDING,
  OUTCOME_UNCONFIRMED, or an execution ended from outside after money may have moved);
* a tracker row **not final** after the drain.

The second variant (``throttle_s``) throttles every write to the tracker table (PutItem and UpdateItem answer
``ProvisionedThroughputExceededException``, holdline_local/throttle.py) for that many seconds of wall-clock time,
from the moment the bank settles the run's first debit: the saga's own ``dynamodb:updateItem`` tasks, the starter,
the reconciler and the sweeper all meet it alike. The same three judgments must hold after the drain.

Every call's transfer is found by the tracker id the starter derives from the contact and the request (the
call may have ended without hearing one), so a transfer the caller never heard of is still checked.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from holdline.connect import parse_event
from holdline.errors import describe_failure
from holdline.logic.failure_events import NEEDS_A_PERSON, failure_detail
from holdline.logic.reconcile import step_before_failure
from holdline.logic.starter import tracker_id_of_request
from holdline_local import throttle
from holdline_local.bench.outcomes import CallResult, ledger_by_reference, mix
from holdline_local.bench.scale import drive, settled_executions
from holdline_local.stack import LocalStack

# What the flow's outcome tells the caller (holdlineOutcome in the simulator's report).
TOLD_SUCCEEDED = {"SUCCEEDED"}
# "The transfer did not go through": it failed, was refused, or (the flow looked it up) was never made.
TOLD_FAILED = {"FAILED", "REJECTED", "NOT_STARTED"}
# "This is taking longer than usual, we will call you back" / "we could not confirm it, an agent will": true
# whatever the transfer does next, and a person follows up.
# UNCONFIRMED ("we could not confirm your transfer; please do not repeat it: we will call you back") is the same
# honest "we do not know", whatever the ledger holds: the row is flagged and an agent follows up.
TOLD_STILL_RUNNING = {"HOLD_EXCEEDED", "START_UNKNOWN", "UNCONFIRMED"}
MAX_SWEEPS = 30
TRACKER_TABLE = "TrackerTable"


@dataclass
class Verdict:
    call: int
    scenario: str
    told: str
    truth: str  # NOT_STARTED | SUCCEEDED | FAILED | RUNNING
    problem: str = ""  # "" when the caller heard the truth (or an honest "we don't know yet")
    flagged: bool = False
    tracker_id: str = ""
    error_code: str = ""  # the errorCode results answers for the row ("" unless FAILED)
    ledger: dict[str, int] = field(default_factory=dict)
    announced: bool = False  # a FAILED row's failure event was put on the bus (failureNotifiedAt)
    #: The flag rests only on the sweeper's assumption for a row ended from outside (``step_before_failure``: the
    #: first money step), not on the row's own reason: the notifier's event, built from the stream's old image,
    #: may say otherwise if the saga's progress writes were skipped.
    flagged_by_assumption: bool = False


def needs_a_person(row: dict[str, Any]) -> bool:
    """Whether the row's failure event asks a person to look (``manualReviewRequired``), as the notifier builds it.
    The row itself carries no errorCode: it is derived from ``failureError``, as results and the event derive it.
    Without the stream's old image the step before the failure is the sweeper's (``step_before_failure``)."""
    if row.get("status") != "FAILED":
        return False
    detail = failure_detail({"trackerId": "", **row}, previous_step=step_before_failure(row))
    return bool(detail["additionalInfo"]["manualReviewRequired"])


def judge(
    index: int, call: CallResult, row: dict[str, Any] | None, ledger: Counter[str], execution: str | None
) -> Verdict:
    """What the caller was told against what happened to the money (pure: unit-tested)."""
    told = call.outcome or "LOST"
    debits, credits, refunds = ledger.get("debit", 0), ledger.get("credit", 0), ledger.get("refund", 0)
    status = str(row.get("status", "")) if row else ""
    error_code = describe_failure(row.get("failureError"))[0] if row and status == "FAILED" else ""
    flagged = row is not None and needs_a_person(row)
    verdict = Verdict(
        index,
        call.scenario.name,
        told,
        status or "NOT_STARTED",
        flagged=flagged,
        tracker_id=str(row.get("trackerId", "")) if row else "",
        error_code=error_code,
        ledger={k: v for k, v in ledger.items() if v},
        announced=bool(row and row.get("failureNotifiedAt")),
        flagged_by_assumption=flagged and error_code not in NEEDS_A_PERSON,
    )
    if row is None:
        if debits or credits:
            verdict.problem = f"money moved ({dict(ledger)}) with no tracker row"
        elif execution is not None:
            verdict.problem = f"an execution ({execution}) with no tracker row"
        elif told in TOLD_SUCCEEDED:
            verdict.problem = "told SUCCEEDED, but nothing was started"
        return verdict
    if status not in {"SUCCEEDED", "FAILED"}:
        verdict.problem = f"tracker {status} after the drain"
        return verdict
    moved = status == "SUCCEEDED"
    if moved and (debits, credits, refunds) != (1, 1, 0):
        verdict.problem = f"SUCCEEDED with ledger {dict(ledger)}"
    elif not moved and debits - refunds != 0 and not flagged:
        verdict.problem = f"debited and forgotten: FAILED with ledger {dict(ledger)}, not flagged"
    elif not moved and credits and not flagged:
        verdict.problem = f"credit landed on a FAILED transfer, not flagged: {dict(ledger)}"
    elif told in TOLD_SUCCEEDED and not moved:
        verdict.problem = "told SUCCEEDED, but the transfer FAILED"
    elif told in TOLD_FAILED and debits - refunds > 0 and credits:
        # The money went through (the row, FAILED and flagged, may say otherwise): "it failed" makes the caller
        # repeat it and pay twice.
        verdict.problem = f"told {told}, but the money moved: ledger {dict(ledger)}"
    elif moved and told not in TOLD_SUCCEEDED | TOLD_STILL_RUNNING:
        # An apology, an error or "it failed" while the money went through: the caller will try again.
        verdict.problem = f"told {told}, but the transfer SUCCEEDED"
    return verdict


def _sweep_until_final(stack: LocalStack, deadline_s: float) -> list[dict[str, int]]:
    """The sweeper as its schedule would run it once its window has passed (``now`` moved past
    SWEEP_AFTER_SECONDS), until it finds nothing left to examine."""
    from holdline.config import get_settings
    from holdline.logic import reconcile

    reports: list[dict[str, int]] = []
    until = time.monotonic() + deadline_s
    assert stack.scheduler is not None
    with stack.scheduler.paused(), stack.as_function("SweeperFunction"):
        settings = get_settings()
        while len(reports) < MAX_SWEEPS and time.monotonic() < until:
            report = reconcile.sweep(
                settings, now=time.time() + settings.sweep_after_seconds + 10, sleep=lambda _: None
            )
            reports.append(
                {
                    "examined": report.examined,
                    "reconciled": report.reconciled,
                    "still_running": report.still_running,
                    "failed": report.failed,
                }
            )
            if report.examined == report.still_running and not report.failed:
                break  # nothing more it can end: only live executions (or nothing) are left
            time.sleep(1.0)  # the reconciled rows' events are announced before the next run
    return reports


@dataclass
class TrackerThrottle:
    """Throttles the tracker table's writes for ``seconds`` of wall-clock time from the first debit the bank
    settles after it starts (a background thread)."""

    bank: Any
    seconds: float
    debits_before: int = 0
    started_after_s: float | None = None  # since the throttle was armed (the calls' start)
    lasted_s: float = 0.0
    refused: dict[str, int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def arm(self) -> None:
        self.debits_before = self._debits()
        throttle.install()
        self._thread = threading.Thread(target=self._run, name="tracker-throttle", daemon=True)
        self._thread.start()

    def _debits(self) -> int:
        return sum(1 for entry in self.bank.ledger if entry.type == "debit")

    def _run(self) -> None:
        armed = time.monotonic()
        while not self._stop.is_set() and self._debits() <= self.debits_before:
            time.sleep(0.05)
        if self._stop.is_set():
            return
        before = Counter(throttle.refused)
        started = time.monotonic()
        self.started_after_s = started - armed
        throttle.throttle(TRACKER_TABLE)
        try:
            self._stop.wait(self.seconds)
        finally:
            throttle.release(TRACKER_TABLE)
            self.lasted_s = time.monotonic() - started
            self.refused = {op: count for (table, op), count in (throttle.refused - before).items()}

    def finish(self) -> dict[str, Any]:
        """Waits for the throttle to end (it ends on its own clock; stopped early only if no debit ever came)."""
        if self._thread is not None:
            if self.started_after_s is None:
                self._stop.set()
            self._thread.join()
        return {
            "seconds": self.seconds,
            "table": TRACKER_TABLE,
            "started_after_s": self.started_after_s,
            "lasted_s": self.lasted_s,
            "refused": self.refused,
        }


def run(
    stack: LocalStack,
    n: int,
    *,
    workers: int,
    caller_time_scale: float,
    arrivals_per_s: float,
    deadline_s: float,
    drain_s: float = 300,
    throttle_s: float = 0.0,
) -> dict[str, Any]:
    scenarios = mix(n)
    assert stack.bank is not None
    total_before = stack.bank.total_balance()
    throttler = TrackerThrottle(stack.bank, throttle_s) if throttle_s else None
    if throttler is not None:
        throttler.arm()
    run = drive(
        stack,
        scenarios,
        workers=workers,
        caller_time_scale=caller_time_scale,
        arrivals_per_s=arrivals_per_s,
        deadline_s=deadline_s,
    )
    # The drain starts once the writes go through again: the throttle is the fault, the drain is the recovery.
    throttled = throttler.finish() if throttler is not None else None
    drain_started = time.monotonic()
    executions = settled_executions(stack, run.executions_before, wait_s=drain_s)
    sweeps = _sweep_until_final(stack, deadline_s=drain_s)
    executions = settled_executions(stack, run.executions_before, wait_s=5)
    drain = time.monotonic() - drain_started

    ddb = stack.client("dynamodb")
    ledger = ledger_by_reference(stack.bank.ledger)
    verdicts: list[Verdict] = []
    for index, call in enumerate(run.results):
        # The id the starter gives this contact's request, derived as the status function's lookup derives it.
        tracker_id = tracker_id_of_request(parse_event(call.event))
        assert tracker_id is not None, "the bench's requests are valid"
        if call.tracker_id and call.tracker_id != tracker_id:
            verdicts.append(
                Verdict(
                    index,
                    call.scenario.name,
                    call.outcome,
                    "?",
                    f"heard tracker {call.tracker_id}",
                    tracker_id=tracker_id,
                )
            )
            continue
        item = ddb.get_item(TableName="TrackerTable", Key={"trackerId": {"S": tracker_id}}, ConsistentRead=True)
        row = _plain(item.get("Item"))
        verdict = judge(index, call, row, ledger.get(tracker_id, Counter()), executions.get(tracker_id))
        verdict.tracker_id = tracker_id
        verdicts.append(verdict)
    problems = [
        f"call {v.call} ({v.scenario}, tracker {v.tracker_id}): {v.problem}; told {v.told}, row {v.truth}"
        f"{'/' + v.error_code if v.error_code else ''}, ledger {v.ledger or '{}'}; heard "
        f"{run.results[v.call].caller_hears!r}; Error branches: {'; '.join(run.results[v.call].error_branches) or '-'}"
        for v in verdicts
        if v.problem
    ]
    if run.unfinished:
        problems.append(f"{run.unfinished} of {n} calls not finished after {deadline_s:.0f} s")
    problems += [f"caller crashed: {e}" for e in run.errors[:5]]
    if stack.bank.total_balance() != total_before:
        problems.append("money created or lost at the bank")
    told = Counter(v.told for v in verdicts)
    return {
        "n": n,
        "arrivals_per_s": arrivals_per_s,
        "wall_s": run.wall_s,
        "drain_s": drain,
        "sweeps": sweeps,
        "ok": not problems,
        "problems": problems[:20],
        "problem_count": len(problems),
        "told": dict(told),
        "truth": dict(Counter(v.truth for v in verdicts)),
        "wrong_outcome": sum(1 for v in verdicts if v.problem.startswith("told")),
        "debited_not_flagged": sum(1 for v in verdicts if "not flagged" in v.problem),
        "not_final": sum(1 for v in verdicts if "after the drain" in v.problem),
        "flagged": sum(1 for v in verdicts if v.flagged),
        "apologised_while_started": sum(
            1
            for v in verdicts
            if v.told not in TOLD_SUCCEEDED | TOLD_FAILED | TOLD_STILL_RUNNING and v.truth != "NOT_STARTED"
        ),
        # How far past its capacity the stack was: calls whose flow had to recover from an Error branch.
        "took_error_branch": sum(1 for r in run.results if r.error_branches),
        "error_branches": dict(
            Counter(branch.split(": ", 1)[0] for r in run.results for branch in r.error_branches).most_common(5)
        ),
        "cpu_ms_per_call": run.stack_cpu_s * 1000 / n,
        "error_codes": dict(Counter(v.error_code for v in verdicts if v.error_code)),
        # Flagged rows whose failure event the notifier (or the sweeper) has put on the bus.
        "flagged_announced": sum(1 for v in verdicts if v.flagged and v.announced),
        # Rows whose money is not settled (debit kept, or a credit on a FAILED row) and whose flag rests only on the
        # assumption above: the ones to check against the failure events really put.
        "money_flagged_by_assumption": [
            v.tracker_id
            for v in verdicts
            if v.flagged_by_assumption
            and (v.ledger.get("debit", 0) - v.ledger.get("refund", 0) > 0 or v.ledger.get("credit", 0))
        ][:20],
        # Flagged rows an agent already has a Connect task for (the follow-up workflow) when the run is judged.
        "flagged_with_task": _with_task(stack, [v.tracker_id for v in verdicts if v.flagged]),
        "throttle": throttled,
    }


def _with_task(stack: LocalStack, tracker_ids: list[str]) -> int:
    if stack.connect is None:
        return 0
    import json

    tasks = "\n".join(json.dumps(task.request, default=str) for task in stack.connect.tasks)
    return sum(1 for tracker_id in tracker_ids if tracker_id and tracker_id in tasks)


def _plain(item: dict[str, Any] | None) -> dict[str, Any] | None:
    if item is None:
        return None
    from boto3.dynamodb.types import TypeDeserializer

    deserializer = TypeDeserializer()
    return {key: deserializer.deserialize(value) for key, value in item.items()}
