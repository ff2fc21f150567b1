"""Against a stack deployed with `sam deploy` (set AWS_SAM_STACK_NAME, and AWS credentials for its account).

Skipped cleanly without them. Calls go through the shipped flow with the simulator, to the real functions:
what a caller would hear, minus Connect itself. Run: AWS_SAM_STACK_NAME=holdline pytest -m e2e tests/e2e_aws
"""

from __future__ import annotations

import os
import uuid
from typing import Any

import pytest

from holdline_local.cli import _deployed_stack
from holdline_local.simulator import SimulatedCall, invoked_functions
from tests.conftest import load_event

STACK = os.environ.get("AWS_SAM_STACK_NAME", "")


def _credentials() -> bool:
    try:
        import boto3

        return boto3.Session().get_credentials() is not None
    except Exception:
        return False


pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not STACK, reason="AWS_SAM_STACK_NAME is not set: no deployed stack to test"),
    pytest.mark.skipif(not _credentials(), reason="no AWS credentials"),
]


@pytest.fixture(scope="module")
def deployed() -> tuple[Any, dict[str, str]]:
    return _deployed_stack(STACK)


def _call(deployed: tuple[Any, dict[str, str]], event_file: str) -> Any:
    invoke, functions = deployed
    event = load_event(event_file)
    contact = event["Details"]["ContactData"]
    contact["ContactId"] = contact["InitialContactId"] = str(uuid.uuid4())
    return SimulatedCall(invoke, event, functions=functions, time_scale=1.0).run()


def test_invalid_amount_is_rejected_by_the_deployed_starter(deployed: Any) -> None:
    report = _call(deployed, "starter-invalid-amount.json")
    assert (report.outcome, report.error_code) == ("REJECTED", "INVALID_AMOUNT")
    assert report.error_branches == []  # every deployed answer was in time, flat, and small


def test_a_transfer_reaches_a_final_outcome(deployed: Any) -> None:
    """SUCCEEDED with a reachable bank (BankApiUrl); with the default placeholder URL the saga fails cleanly."""
    report = _call(deployed, "starter.json")
    assert report.outcome in {"SUCCEEDED", "FAILED"}, report.to_json()
    assert report.error_branches == []
    assert invoked_functions(report.steps)[-1] == "ResultsFunction"
    assert all(step.duration_ms < step.limit_ms for step in report.steps if step.kind == "invoke")
