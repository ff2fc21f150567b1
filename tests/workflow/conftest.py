"""Workflow tests share the session's local stack; these fixtures make task timeouts testable and keep the
bank's faults from leaking between tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from holdline_local import moto_adapter
from holdline_local.sandbox_bank import SandboxBank
from holdline_local.stack import LocalStack

# Timeouts at a quarter: a leg's Lambda Timeout (8 s) becomes 2 s and its task's TimeoutSeconds (10 s) 2.5 s,
# in AWS's order. Far above a leg's real run time (tens of ms, a cold start under a second), so healthy legs
# never time out, and a bank that answers 2.3 s late really does outlive the function waiting for it.
TIMEOUT_SCALE = 0.25
#: A bank delay past a leg's (scaled) Lambda Timeout, short of the bank client's own 5 s timeout.
PAST_THE_FUNCTION_TIMEOUT = 8 * TIMEOUT_SCALE + 0.3


@pytest.fixture(autouse=True)
def scaled_timeouts(stack: LocalStack) -> Iterator[None]:
    previous = moto_adapter.set_timeout_scale(TIMEOUT_SCALE)
    yield
    moto_adapter.set_timeout_scale(previous)


@pytest.fixture
def bank(stack: LocalStack) -> Iterator[SandboxBank]:
    assert stack.bank is not None
    stack.bank.clear_faults()
    yield stack.bank
    stack.bank.clear_faults()
