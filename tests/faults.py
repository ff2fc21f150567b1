"""Fault injection around the functions' boto3 clients (``holdline.dal.aws.client``).

A :class:`FaultyClients` stands in for ``aws.client``: every call goes to the real client (the local stack's
moto, or any client factory), except those a test scripted to fail. Faults are consumed in order, one per
call of that operation, so "throttle twice, then pass" is ``faults.on("dynamodb", "put_item", THROTTLE,
THROTTLE)``. Nothing here answers for the dependency: a call that is not failed is really made.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError, ReadTimeoutError


class Crash(BaseException):
    """The Lambda runtime dying mid-invocation (timeout, out of memory): no handler code catches it."""


Fault = Callable[[Callable[[], Any], str], Any]


def throttle(code: str = "ThrottlingException") -> Fault:
    def fault(real: Callable[[], Any], operation: str) -> Any:
        raise ClientError(
            {"Error": {"Code": code, "Message": "Rate exceeded"}, "ResponseMetadata": {"HTTPStatusCode": 400}},
            operation,
        )

    return fault


def error(code: str, status: int = 400) -> Fault:
    def fault(real: Callable[[], Any], operation: str) -> Any:
        raise ClientError(
            {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, operation
        )

    return fault


def crash_before(real: Callable[[], Any], operation: str) -> Any:
    raise Crash(f"died before {operation}")


def crash_after(real: Callable[[], Any], operation: str) -> Any:
    """The call lands, then the runtime dies before anything reads its answer."""
    real()
    raise Crash(f"died after {operation}")


def lost_answer(real: Callable[[], Any], operation: str) -> Any:
    """The call lands but its answer never arrives (botocore's read timeout): a transient fault."""
    real()
    raise ReadTimeoutError(endpoint_url="http://local")


def slow(seconds: float) -> Fault:
    def fault(real: Callable[[], Any], operation: str) -> Any:
        time.sleep(seconds)
        return real()

    return fault


def slow_until_left(context: Any, seconds: float) -> Fault:
    """Make the call, then hold its answer until ``context`` (a :class:`DeadlineContext`) has ``seconds`` left (or
    less, if the call itself took longer): a call that ends at a known point of the budget, whatever the machine's
    load spent before it or on it."""

    def fault(real: Callable[[], Any], operation: str) -> Any:
        answer = real()
        time.sleep(max(0.0, context.get_remaining_time_in_millis() / 1000 - seconds))
        return answer

    return fault


THROTTLE = throttle()


@dataclass
class FaultyClients:
    """Use as ``monkeypatch.setattr(aws, "client", FaultyClients(real))``."""

    real: Callable[[str], Any]
    plans: dict[tuple[str, str], list[Fault]] = field(default_factory=dict)
    always: dict[tuple[str, str], Fault] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def on(self, service: str, operation: str, *faults: Fault) -> FaultyClients:
        self.plans.setdefault((service, operation), []).extend(faults)
        return self

    def always_on(self, service: str, operation: str, fault: Fault) -> FaultyClients:
        self.always[(service, operation)] = fault
        return self

    def count(self, service: str, operation: str) -> int:
        return self.calls.count(f"{service}.{operation}")

    def __call__(self, service: str) -> Any:
        # Only the handler this test runs in its own process sees the faults: the local stack's functions run
        # in execution environments (processes) of their own.
        return _Proxy(self, service)

    def _next_fault(self, service: str, operation: str) -> Fault | None:
        with self._lock:
            self.calls.append(f"{service}.{operation}")
            plan = self.plans.get((service, operation))
            if plan:
                return plan.pop(0)
            return self.always.get((service, operation))


class _Proxy:
    def __init__(self, owner: FaultyClients, service: str) -> None:
        self._owner = owner
        self._service = service

    def __getattr__(self, operation: str) -> Callable[..., Any]:
        def invoke(**kwargs: Any) -> Any:
            def real() -> Any:
                return getattr(self._owner.real(self._service), operation)(**kwargs)

            fault = self._owner._next_fault(self._service, operation)
            return real() if fault is None else fault(real, operation)

        return invoke


class DeadlineContext:
    """A Lambda context whose remaining time really runs down, as the Lambda runtime's does."""

    function_name = "StarterFunction"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:StarterFunction"
    memory_limit_in_mb = 512
    aws_request_id = "22222222-3333-4444-5555-666666666666"
    log_group_name = "/aws/lambda/StarterFunction"
    log_stream_name = "test"

    def __init__(self, timeout_ms: int) -> None:
        self._deadline = time.monotonic() + timeout_ms / 1000

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))
