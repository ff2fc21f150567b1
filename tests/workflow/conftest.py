"""Workflow tests share the session's local stack; these fixtures make task timeouts testable and keep the
bank's faults from leaking between tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from holdline_local import moto_adapter
from holdline_local.sandbox_bank import SandboxBank
from holdline_local.stack import LocalStack

# TimeoutSeconds 10 becomes 1 s of wall-clock time: far above a leg's real run time (tens of ms), so healthy
# tasks never time out, and a bank that answers 1.5 s late really does outlive its task.
TASK_TIMEOUT_SCALE = 0.1


@pytest.fixture(autouse=True)
def fast_task_timeouts(stack: LocalStack) -> Iterator[None]:
    previous = moto_adapter.set_task_timeout_scale(TASK_TIMEOUT_SCALE)
    yield
    moto_adapter.set_task_timeout_scale(previous)


@pytest.fixture
def bank(stack: LocalStack) -> Iterator[SandboxBank]:
    assert stack.bank is not None
    stack.bank.clear_faults()
    yield stack.bank
    stack.bank.clear_faults()
