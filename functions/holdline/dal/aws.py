"""boto3 clients, created once per container and only when first used (cold start stays small), and the one
way the code calls them: :func:`call`, which retries within a time budget.

The Connect-facing path has 8 s at most (usually 3-6 s configured in the flow): botocore's defaults (60 s
timeouts, several retries with their own backoff) would blow it. So clients get short timeouts and no SDK
retries; :func:`call` retries throttling and transient faults itself, with exponential backoff and full
jitter, and checks the deadline the handler set with :func:`budget` before **every** attempt, the first one
included: an attempt is made only if its client's connect + read timeouts end inside the budget.
Every call we make through it is idempotent (GetItem, a conditional PutItem, a named StartExecution), so a
retry after a lost answer is safe.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from holdline.observability import logger

CONNECT_TIMEOUT = 0.5
READ_TIMEOUT = 1.5
#: The longest one whole attempt can take before botocore gives up on it.
ATTEMPT_SECONDS = CONNECT_TIMEOUT + READ_TIMEOUT

#: (connect, read) timeouts an attempt may get, longest first. botocore fixes timeouts per client (``Config``),
#: not per request, so an attempt with less time left than a whole one uses a client of a shorter pair, one per
#: service and pair, created the first time it is needed (most invocations only ever use the first). The
#: alternative, skipping an attempt that does not fit whole, would leave a starter whose PutItem took 4.5 s of a
#: 5.7 s budget with no StartExecution at all; DynamoDB and Step Functions answer in milliseconds when healthy,
#: so a 0.3 s read timeout is still a fair attempt. Below the shortest pair no attempt is made: it could only end
#: past the budget, or land after Connect gave up (BudgetExhausted). The shortest pair (0.25 s) is the last chance
#: of a leg whose Timeout is nearly spent (locally, on a compressed time scale, a leg may have only 0.4 s in all).
ATTEMPT_TIMEOUTS: tuple[tuple[float, float], ...] = (
    (CONNECT_TIMEOUT, READ_TIMEOUT),
    (0.3, 0.7),
    (0.2, 0.3),
    (0.1, 0.15),
)
#: The shortest attempt :func:`call` makes.
MIN_ATTEMPT_SECONDS = sum(ATTEMPT_TIMEOUTS[-1])


def client_config(timeouts: tuple[float, float] = ATTEMPT_TIMEOUTS[0]) -> Config:
    connect, read = timeouts
    return Config(
        connect_timeout=connect,
        read_timeout=read,
        # One attempt per botocore call: the SDK's own backoff does not know our deadline, call() does.
        retries={"total_max_attempts": 1, "mode": "standard"},
    )


CONNECT_PATH_CONFIG = client_config()

# Error codes by which DynamoDB and Step Functions say "slow down".
THROTTLING_CODES = frozenset(
    {
        "ThrottlingException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "ThrottledException",
    }
)
# Server-side faults worth another attempt.
TRANSIENT_CODES = THROTTLING_CODES | {
    "InternalServerError",
    "InternalFailure",
    "ServiceUnavailable",
    "ServiceUnavailableException",
}


class BudgetExhausted(Exception):
    """Less time is left than the shortest attempt: the call was not made (or not made again). Transient: with
    time (another invocation, Connect's retry) it may well succeed; the Connect adapter answers
    ``DEPENDENCY_TIMEOUT``."""


TRANSIENT_FAULTS = (
    ConnectTimeoutError,
    ReadTimeoutError,
    EndpointConnectionError,
    ConnectionClosedError,
    BudgetExhausted,
)

BACKOFF_BASE = 0.05
BACKOFF_CAP = 1.0
MAX_ATTEMPTS = 8
#: Without a budget (the saga's legs), a call still stops retrying after this long.
DEFAULT_BUDGET_SECONDS = 5.0

# Seams for tests (a fake clock makes the budget arithmetic exact); the code reads them at call time.
clock: Callable[[], float] = time.monotonic
sleep: Callable[[float], None] = time.sleep

_deadline: ContextVar[float | None] = ContextVar("holdline_aws_deadline", default=None)
_max_attempts: ContextVar[int] = ContextVar("holdline_aws_max_attempts", default=MAX_ATTEMPTS)
# The timeouts of the attempt being made (set by call(), read by the client cache): how a client factory that
# takes only a service name still hands out the client the attempt may use.
_attempt: ContextVar[tuple[float, float]] = ContextVar("holdline_aws_attempt", default=ATTEMPT_TIMEOUTS[0])


def attempt_timeouts() -> tuple[float, float]:
    """(connect, read) timeouts of the attempt being made: the client :func:`client` hands out has them."""
    return _attempt.get()


@contextmanager
def attempt(timeouts: tuple[float, float]) -> Iterator[None]:
    token = _attempt.set(timeouts)
    try:
        yield
    finally:
        _attempt.reset(token)


def new_client(service: str, **overrides: Any) -> Any:
    """A client with the timeouts of the attempt being made (:func:`attempt_timeouts`) and no SDK retries."""
    return boto3.client(service, config=client_config(attempt_timeouts()), **overrides)


class Clients:
    """One client per service and attempt length per container (``overrides``: e.g. an endpoint, for tests).
    boto3's default session is not thread-safe while it creates clients (a handler may call from threads); once
    created, a client is."""

    def __init__(self, **overrides: Any) -> None:
        self._overrides = overrides
        self._clients: dict[tuple[str, tuple[float, float]], Any] = {}
        self._lock = threading.Lock()

    def __call__(self, service: str) -> Any:
        key = (service, attempt_timeouts())
        with self._lock:
            if key not in self._clients:
                self._clients[key] = new_client(service, **self._overrides)
            return self._clients[key]

    def cache_clear(self) -> None:
        with self._lock:
            self._clients.clear()


client = Clients()
#: The container's client cache itself, whatever a test put in ``client``'s place.
clients = client


@contextmanager
def budget(seconds: float, *, attempts: int = MAX_ATTEMPTS) -> Iterator[None]:
    """AWS calls inside this block make an attempt only while it fits in ``seconds`` from now, and at most
    ``attempts`` attempts each (1: the caller paces its own retries, as the outcome waiter does)."""
    deadline = _deadline.set(clock() + max(0.0, seconds))
    limit = _max_attempts.set(max(1, min(attempts, MAX_ATTEMPTS)))
    try:
        yield
    finally:
        _max_attempts.reset(limit)
        _deadline.reset(deadline)


def remaining_seconds() -> float:
    deadline = _deadline.get()
    if deadline is None:
        return DEFAULT_BUDGET_SECONDS
    return deadline - clock()


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return error.get("Code", "") in TRANSIENT_CODES or (isinstance(status, int) and status >= 500)
    return isinstance(exc, TRANSIENT_FAULTS)


def backoff_delay(attempt: int, rand: Callable[[float, float], float] = random.uniform) -> float:
    """Full jitter: a uniform draw below an exponentially growing cap (AWS Architecture Blog, "Exponential
    Backoff And Jitter"), so that Connect's retries and ours do not stampede the same partition in step."""
    return rand(0.0, min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt))


def fitting_timeouts(seconds: float) -> tuple[float, float] | None:
    """The longest (connect, read) pair whose worst case (a hung endpoint: connect + read) ends within
    ``seconds``; None if not even the shortest does."""
    for timeouts in ATTEMPT_TIMEOUTS:
        if sum(timeouts) <= seconds:
            return timeouts
    return None


def call(service: str, operation: str, **kwargs: Any) -> Any:
    """Call ``client(service).operation(**kwargs)``; retry throttling and transient faults with exponential
    backoff and full jitter. Before every attempt, the first included, the attempt gets the longest timeouts
    that still end inside the budget (:func:`fitting_timeouts`); when none fit, no attempt is made and the last
    error (or :class:`BudgetExhausted`) is raised: the Connect adapter turns it into ``THROTTLED`` or
    ``DEPENDENCY_TIMEOUT``."""
    deadline = _deadline.get()
    if deadline is None:
        deadline = clock() + DEFAULT_BUDGET_SECONDS
    name = f"{service}.{operation}"
    attempts = 0
    last: Exception | None = None
    while True:
        left = deadline - clock()
        timeouts = fitting_timeouts(left)
        if timeouts is None:
            logger.warning(
                "AWS call gave up within its budget",
                extra={"operation": name, "attempts": attempts, "reason": _reason(last) if last else "no time left"},
            )
            if last is not None:
                raise last
            raise BudgetExhausted(f"{name}: {max(0.0, left):.2f} s left, less than one attempt")
        attempts += 1
        try:
            with attempt(timeouts):
                return getattr(client(service), operation)(**kwargs)
        except Exception as exc:
            if not is_transient(exc):
                raise
            last = exc
            delay = backoff_delay(attempts)
            # Another attempt only if at least the shortest one still fits after the wait.
            if attempts >= _max_attempts.get() or clock() + delay + MIN_ATTEMPT_SECONDS > deadline:
                logger.warning(
                    "AWS call gave up within its budget",
                    extra={"operation": name, "attempts": attempts, "reason": _reason(exc)},
                )
                raise
        logger.info("retrying AWS call", extra={"operation": name, "attempt": attempts, "delayMs": int(delay * 1000)})
        sleep(delay)


@contextmanager
def transient_as(error: Callable[[str], Exception]) -> Iterator[None]:
    """For the saga's legs: an AWS call that still fails transiently when :func:`call` gives up (throttling,
    5xx, a connect or read timeout) leaves as ``error``, a typed error the state machine's Retry names.
    botocore's own classes (ClientError, ReadTimeoutError) reach Step Functions as an errorType no Retry
    matches, and the transfer would end TECHNICAL_ERROR over a blip. Refusals (AccessDenied, validation)
    stay what they are: a retry would not help."""
    try:
        yield
    except Exception as exc:
        if is_transient(exc):
            raise error(f"AWS call failed transiently: {_reason(exc)}") from exc
        raise


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return type(exc).__name__
