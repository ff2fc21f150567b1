"""boto3 clients, created once per container and only when first used (cold start stays small), and the one
way the code calls them: :func:`call`, which retries within a time budget.

The Connect-facing path has 8 s at most (usually 3-5 s configured in the flow): botocore's defaults (60 s
timeouts, several retries with their own backoff) would blow it. So clients get short timeouts and no SDK
retries; :func:`call` retries throttling and transient faults itself, with exponential backoff and full
jitter, and only while the attempt still fits before the deadline the handler set with :func:`budget`.
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
#: The longest one attempt can take before botocore gives up on it.
ATTEMPT_SECONDS = CONNECT_TIMEOUT + READ_TIMEOUT

CONNECT_PATH_CONFIG = Config(
    connect_timeout=CONNECT_TIMEOUT,
    read_timeout=READ_TIMEOUT,
    # One attempt per botocore call: the SDK's own backoff does not know our deadline, call() does.
    retries={"total_max_attempts": 1, "mode": "standard"},
)

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
TRANSIENT_FAULTS = (ConnectTimeoutError, ReadTimeoutError, EndpointConnectionError, ConnectionClosedError)

BACKOFF_BASE = 0.05
BACKOFF_CAP = 1.0
MAX_ATTEMPTS = 8
#: Without a budget (the saga's legs), a call still stops retrying after this long.
DEFAULT_BUDGET_SECONDS = 5.0

# Seams for tests (a fake clock makes the budget arithmetic exact); the code reads them at call time.
clock: Callable[[], float] = time.monotonic
sleep: Callable[[float], None] = time.sleep

_deadline: ContextVar[float | None] = ContextVar("holdline_aws_deadline", default=None)


def new_client(service: str, **overrides: Any) -> Any:
    return boto3.client(service, config=CONNECT_PATH_CONFIG, **overrides)


class _Clients:
    """One client per service per container. boto3's default session is not thread-safe while it creates
    clients (a handler may call from threads); once created, a client is."""

    def __init__(self) -> None:
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()

    def __call__(self, service: str) -> Any:
        with self._lock:
            if service not in self._clients:
                self._clients[service] = new_client(service)
            return self._clients[service]

    def cache_clear(self) -> None:
        with self._lock:
            self._clients.clear()


client = _Clients()
#: The container's client cache itself, whatever a test put in ``client``'s place.
clients = client


@contextmanager
def budget(seconds: float) -> Iterator[None]:
    """AWS calls inside this block retry only while an attempt still fits in ``seconds`` from now."""
    token = _deadline.set(clock() + max(0.0, seconds))
    try:
        yield
    finally:
        _deadline.reset(token)


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


def call(service: str, operation: str, **kwargs: Any) -> Any:
    """Call ``client(service).operation(**kwargs)``; retry throttling and transient faults with exponential
    backoff and full jitter while a whole attempt (plus the wait before it) fits in the budget, then raise
    the last error (the Connect adapter turns it into ``THROTTLED`` or ``DEPENDENCY_TIMEOUT``)."""
    deadline = _deadline.get()
    if deadline is None:
        deadline = clock() + DEFAULT_BUDGET_SECONDS
    attempt = 0
    while True:
        attempt += 1
        try:
            return getattr(client(service), operation)(**kwargs)
        except Exception as exc:
            if not is_transient(exc):
                raise
            delay = backoff_delay(attempt)
            if attempt >= MAX_ATTEMPTS or clock() + delay + ATTEMPT_SECONDS > deadline:
                logger.warning(
                    "AWS call gave up within its budget",
                    extra={"operation": f"{service}.{operation}", "attempts": attempt, "reason": _reason(exc)},
                )
                raise
            logger.info(
                "retrying AWS call",
                extra={"operation": f"{service}.{operation}", "attempt": attempt, "delayMs": int(delay * 1000)},
            )
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
