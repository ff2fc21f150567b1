"""Wait for a request's outcome inside one asynchronous invocation, while the flow keeps the caller on hold.

The flow invokes OutcomeWaiterFunction in ASYNCHRONOUS mode: Connect gives it up to 60 s, moves on at once
(a Wait block plays the hold prompt in its Continue branch) and takes the Wait's "Lambda returned" branch the
moment this answers ("AWS Lambda function" block, https://docs.aws.amazon.com/connect/latest/adminguide/
invoke-lambda-function-block.html; "Wait" block, https://docs.aws.amazon.com/connect/latest/adminguide/
wait.html). So this reads the tracker row, with the status function's own logic, every
:data:`POLL_INTERVAL_SECONDS`, and answers

* the status answer as soon as it says stop waiting (final, ``NOT_FOUND``, or ``holdExceeded``);
* else, when the budget the Connect adapter set (the Lambda's remaining time and the block's 60 s, less
  margins; :func:`holdline.connect.budget_seconds`) no longer fits another read, the last status answer
  (``keepWaiting=true``): the flow waits again;
* if no read at all succeeded, the last error: the adapter answers ``THROTTLED`` / ``DEPENDENCY_TIMEOUT`` /
  ``DEPENDENCY_ERROR`` and the flow falls back to its polling loop.

Each read is one attempt (a strongly consistent GetItem; the SDK's own retries are off); a throttled or
failed read is followed by exponential backoff with full jitter before the next, so thousands of waiting
callers back off together instead of hammering one partition. It only reads: Connect's retries of the
invocation, or a second waiter for the same tracker, are harmless.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from typing import Any

from holdline.config import Settings
from holdline.dal import aws
from holdline.logic.tracking import awaits_its_start, is_tracker_id, read_row, start_unstarted, status_answer
from holdline.observability import logger

#: Between two reads while nothing goes wrong: the outcome reaches the caller at most this late (plus the
#: read itself). Each read is one strongly consistent read unit of a row under 4 KB.
POLL_INTERVAL_SECONDS = 0.3
#: What starting a row left at STARTED may take (StartExecution, then at most a conditional write and a read).
START_BUDGET_SECONDS = 3 * aws.ATTEMPT_SECONDS
#: The longest pause between two reads after consecutive failures (throttling, timeouts).
BACKOFF_CAP_SECONDS = 2.0
#: A hard bound on reads per invocation, whatever the clock says: 60 s / 0.3 s.
MAX_READS = math.ceil(60 / POLL_INTERVAL_SECONDS)

# Seam for tests: the time the tracker row's expiry and the caller's hold are measured against. The pacing
# itself uses aws.clock and aws.sleep (one fake clock in tests drives both).
wall_clock: Callable[[], float] = time.time


def backoff_seconds(failures: int, rand: Callable[[float, float], float] = random.uniform) -> float:
    """The pause before the next read: the poll interval, or after ``failures`` consecutive failed reads an
    exponentially growing pause with full jitter, at most :data:`BACKOFF_CAP_SECONDS`."""
    if failures == 0:
        return POLL_INTERVAL_SECONDS
    return rand(POLL_INTERVAL_SECONDS, min(BACKOFF_CAP_SECONDS, POLL_INTERVAL_SECONDS * 2**failures))


def wait_for_outcome(tracker_id: object, settings: Settings) -> dict[str, Any]:
    """Read until the status answer says stop waiting or the budget ends; see the module's docstring."""
    if not is_tracker_id(tracker_id):
        return {**status_answer(None, settings, wall_clock()), "waitedSeconds": 0, "reads": 0}
    started = aws.clock()
    last: dict[str, Any] | None = None
    failure: Exception | None = None
    failures = reads = 0
    start_checked = False
    while reads < MAX_READS:
        reads += 1
        try:
            # One attempt: the loop, not aws.call, paces retries (it knows the poll interval).
            with aws.budget(min(aws.remaining_seconds(), aws.ATTEMPT_SECONDS), attempts=1):
                now = wall_clock()
                row = read_row(tracker_id, now)
            if row is not None and not start_checked and awaits_its_start(row, settings, now):
                # A row left at STARTED (tracking's docstring): one start per invocation, not one per 0.3 s read;
                # the row then says whether the execution got going. Retried at the next read only if this raised.
                with aws.budget(min(aws.remaining_seconds(), START_BUDGET_SECONDS), attempts=2):
                    row = start_unstarted(tracker_id, row, settings, source="OUTCOME_WAITER")
                start_checked = True
            answer = status_answer(row, settings, now)
        except Exception as exc:
            if not aws.is_transient(exc):
                raise
            failure, failures = exc, failures + 1
        else:
            last, failures = answer, 0
            if not answer["keepWaiting"]:
                break
        pause = backoff_seconds(failures)
        # Another read must start and finish (one whole attempt) before the budget ends.
        if pause + aws.ATTEMPT_SECONDS > aws.remaining_seconds():
            break
        aws.sleep(pause)
    waited = aws.clock() - started
    if last is None:
        assert failure is not None
        logger.warning("outcome wait: no read succeeded", extra={"reads": reads, "waitedSeconds": round(waited, 1)})
        raise failure
    facts = {"status": last["status"], "keepWaiting": last["keepWaiting"], "reads": reads}
    logger.info("outcome wait answered", extra={**facts, "waitedSeconds": round(waited, 1)})
    # How long it held and how often it read: what the caller's wait cost (make bench's cost model reads them).
    return {**last, "waitedSeconds": int(waited), "reads": reads}
