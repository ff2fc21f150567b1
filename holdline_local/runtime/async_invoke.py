"""Lambda's asynchronous invocation queue, for the local runtime.

"How Lambda handles errors and retries with asynchronous invocation"
(https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-error-handling.html):

- A function error (including a timeout) is retried ``MaximumRetryAttempts`` times (default 2): one minute
  before the first retry, two minutes before the second.
- A throttle (429) or a system error is returned to the queue and retried for up to
  ``MaximumEventAgeInSeconds`` (default 6 hours), the interval growing exponentially from 1 s to 5 minutes.
- When the attempts are used up or the event is too old, the invocation record goes to the ``OnFailure``
  destination (the shape documented in "Capturing records of asynchronous invocations",
  https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-retain-records.html); a success goes to
  ``OnSuccess`` if there is one. Lambda writes them with the function's execution role.

Every wait is multiplied by the local stack's time scale, like the state machines' Waits.
"""

from __future__ import annotations

import heapq
import itertools
import json
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from holdline_local.runtime.service import FunctionConfig, InvokeResult, LambdaRuntime, Throttled

FUNCTION_ERROR_DELAYS = (60.0, 120.0)
THROTTLE_FIRST_DELAY, THROTTLE_MAX_DELAY = 1.0, 300.0


@dataclass(frozen=True)
class AsyncPolicy:
    """A function's EventInvokeConfig (AWS's defaults when it has none)."""

    maximum_retry_attempts: int = 2
    maximum_event_age_seconds: int = 21600
    on_failure: str | None = None
    on_success: str | None = None


@dataclass(order=True)
class _Queued:
    due: float
    sequence: int
    function: str = field(compare=False)
    payload: bytes = field(compare=False)
    request_id: str = field(compare=False)
    received: float = field(compare=False)
    attempts: int = field(compare=False, default=0)
    throttles: int = field(compare=False, default=0)


Lookup = Callable[[str], tuple[FunctionConfig, AsyncPolicy]]
Deliver = Callable[[str, dict[str, Any], FunctionConfig], None]


@dataclass(frozen=True)
class AsyncOutcome:
    function: str
    request_id: str
    condition: str  # Success | RetriesExhausted | EventAgeExceeded
    attempts: int
    destination: str | None


class AsyncInvoker:
    def __init__(
        self, runtime: LambdaRuntime, lookup: Lookup, deliver: Deliver, *, time_scale: float, workers: int = 16
    ) -> None:
        self._runtime = runtime
        self._lookup = lookup
        self._deliver = deliver
        self.time_scale = time_scale
        self._heap: list[_Queued] = []
        self._sequence = itertools.count()
        self._lock = threading.Condition()
        self._in_flight = 0
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lambda-async")
        self._stopped = False
        self.outcomes: list[AsyncOutcome] = []
        self._thread = threading.Thread(target=self._dispatch, name="lambda-async-queue", daemon=True)
        self._thread.start()

    def submit(self, function: str, payload: bytes) -> str:
        """Accept an event (Invoke with InvocationType=Event answers 202 at once)."""
        request_id = str(uuid.uuid4())
        now = time.monotonic()
        self._push(_Queued(now, next(self._sequence), function, payload, request_id, now))
        return request_id

    def wait(self, timeout: float = 60) -> None:
        """Tests: until every accepted event has been run or given up on."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._heap or self._in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("asynchronous invocations still queued")
                self._lock.wait(min(remaining, 0.1))

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            self._lock.notify_all()
        self._pool.shutdown(wait=False, cancel_futures=True)

    # ---- the queue ----------------------------------------------------------------------------------------
    def _push(self, item: _Queued) -> None:
        with self._lock:
            heapq.heappush(self._heap, item)
            self._lock.notify_all()

    def _dispatch(self) -> None:
        while True:
            with self._lock:
                while not self._stopped and (not self._heap or self._heap[0].due > time.monotonic()):
                    self._lock.wait(None if not self._heap else max(0.0, self._heap[0].due - time.monotonic()))
                if self._stopped:
                    return
                item = heapq.heappop(self._heap)
                self._in_flight += 1
            self._pool.submit(self._attempt, item)

    def _attempt(self, item: _Queued) -> None:
        try:
            self._run(item)
        finally:
            with self._lock:
                self._in_flight -= 1
                self._lock.notify_all()

    def _run(self, item: _Queued) -> None:
        config, policy = self._lookup(item.function)
        age = (time.monotonic() - item.received) / max(self.time_scale, 1e-9)
        if age > policy.maximum_event_age_seconds:
            self._give_up(item, config, policy, "EventAgeExceeded", None)
            return
        try:
            result = self._runtime.invoke(config, item.payload)
        except Throttled:
            delay = min(THROTTLE_MAX_DELAY, THROTTLE_FIRST_DELAY * 2**item.throttles)
            item.throttles += 1
            self._retry_later(item, delay)
            return
        item.attempts += 1
        if result.function_error is None:
            self._finish(item, config, policy, result)
            return
        if item.attempts <= policy.maximum_retry_attempts:
            self._retry_later(item, FUNCTION_ERROR_DELAYS[min(item.attempts - 1, len(FUNCTION_ERROR_DELAYS) - 1)])
            return
        self._give_up(item, config, policy, "RetriesExhausted", result)

    def _retry_later(self, item: _Queued, seconds: float) -> None:
        item.due = time.monotonic() + seconds * self.time_scale
        item.sequence = next(self._sequence)
        self._push(item)

    def _finish(self, item: _Queued, config: FunctionConfig, policy: AsyncPolicy, result: InvokeResult) -> None:
        if policy.on_success:
            self._deliver(policy.on_success, _record(item, config, "Success", result), config)
        self.outcomes.append(AsyncOutcome(config.name, item.request_id, "Success", item.attempts, policy.on_success))

    def _give_up(
        self, item: _Queued, config: FunctionConfig, policy: AsyncPolicy, condition: str, result: InvokeResult | None
    ) -> None:
        if policy.on_failure:
            self._deliver(policy.on_failure, _record(item, config, condition, result), config)
        self.outcomes.append(AsyncOutcome(config.name, item.request_id, condition, item.attempts, policy.on_failure))


def _record(item: _Queued, config: FunctionConfig, condition: str, result: InvokeResult | None) -> dict[str, Any]:
    """An invocation record, as Lambda sends it to a destination."""
    response: dict[str, Any] = {"statusCode": 200, "executedVersion": "$LATEST"}
    if result is not None and result.function_error:
        response["functionError"] = result.function_error
    return {
        "version": "1.0",
        "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z",
        "requestContext": {
            "requestId": item.request_id,
            "functionArn": f"{config.arn}:$LATEST",
            "condition": condition,
            "approximateInvokeCount": item.attempts,
        },
        "requestPayload": _json_or_text(item.payload),
        "responseContext": response,
        "responsePayload": _json_or_text(result.payload) if result is not None else None,
    }


def _json_or_text(raw: bytes) -> Any:
    try:
        return json.loads(raw or b"null")
    except ValueError:
        return raw.decode("utf-8", "replace")
