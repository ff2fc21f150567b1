"""Concurrency kept for money (issue 19, item 6): callers on hold cannot starve the saga's money legs.

One outcome waiter runs per caller on hold, for up to 55 s. The local runtime admits invocations as Lambda does
(holdline_local/runtime/service.py: reserved concurrency and the account's limit, "Lambda function scaling"):
here the account is filled with as many waiters as it admits (each admission is an in-flight invocation, as
if Connect had started that many), then a transfer runs through the real saga and its legs are not throttled."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from holdline.handlers import starter
from holdline_local.runtime import FunctionConfig, Throttled
from holdline_local.stack import LocalStack
from tests.helpers import MONEY_LEGS, wait_for_execution

GOOD = {"fromAccount": "CHK-00011111", "toAccount": "SAV-00022222", "amount": "3.10", "currency": "USD"}


def _config(stack: LocalStack, name: str) -> FunctionConfig:
    """What admission reads of a deployed function: its name and its reserved concurrency (the Lambda API's)."""
    reserved = stack.client("lambda").get_function_concurrency(FunctionName=name).get("ReservedConcurrentExecutions")
    return FunctionConfig(
        name=name,
        arn="",
        handler="",
        task_root=Path("."),
        timeout=60,
        memory_mb=128,
        variables=(),
        reserved_concurrency=None if reserved is None else int(reserved),
    )


def test_waiters_filling_the_account_leave_the_money_legs_their_concurrency(
    stack: LocalStack, connect_event: Any, call: Any
) -> None:
    runtime = stack.runtime
    assert runtime is not None
    waiter = _config(stack, "OutcomeWaiterFunction")
    admitted = 0
    try:
        for _ in range(runtime.account_concurrency):  # as many callers on hold as the account could ever run
            try:
                runtime._admit(waiter)
            except Throttled as throttled:
                assert throttled.reason == "ReservedFunctionConcurrentInvocationLimitExceeded"
                break
            admitted += 1
        # The waiters are capped below the account's limit: the flow falls back to polling past the cap.
        assert 0 < admitted < runtime.account_concurrency
        for leg in MONEY_LEGS:
            assert (_config(stack, leg).reserved_concurrency or 0) > 0, leg
        before = {leg: runtime.stats[leg].throttles if leg in runtime.stats else 0 for leg in MONEY_LEGS}
        answer = call(starter.handler, connect_event(GOOD))
        assert answer["status"] == "STARTED"
        assert wait_for_execution(stack, answer["trackerId"])["status"] == "SUCCEEDED"
        assert stack.bank is not None and stack.bank.count(answer["trackerId"], "credit") == 1
        after = {leg: runtime.stats[leg].throttles if leg in runtime.stats else 0 for leg in MONEY_LEGS}
        assert after == before
    finally:
        with runtime._lock:
            runtime._active[waiter.name] -= admitted
            runtime._lock.notify_all()
