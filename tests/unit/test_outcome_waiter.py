"""The outcome waiter on a fake clock and a fake tracker table: exact arithmetic for when it reads, how it backs
off, and when it answers (final at once; keep-waiting before its budget; the adapter's error codes when no read
succeeded). tests/functional/test_outcome_waiter.py runs it against the local stack's DynamoDB."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from holdline import config
from holdline.connect import ASYNC_CONNECT_MARGIN_SECONDS, MAX_ANSWER_BYTES
from holdline.dal import aws
from holdline.handlers import outcome_waiter
from holdline.logic import outcome
from tests.conftest import load_event

TRACKER_ID = "transfer-00000000000000000000000000000001"
CREATED = 1_700_000_000


class FakeClock:
    """aws.clock, aws.sleep and the wall clock in one: sleeping is the only thing that moves time."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return CREATED + 5 + self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def _throttled(operation: str) -> ClientError:
    error = {"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}
    return ClientError({**error, "ResponseMetadata": {"HTTPStatusCode": 400}}, operation)


class FakeTable:
    """GetItem of one tracker row whose status is decided by the fake time; ``fail`` decides a read's error."""

    def __init__(self, clock: FakeClock, settle_at: float | None, *, status: str = "SUCCEEDED") -> None:
        self.clock = clock
        self.settle_at = settle_at
        self.final_status = status
        self.reads: list[float] = []
        self.fail: Callable[[int], Exception | None] = lambda n: None
        self.missing = False

    def __call__(self, service: str) -> FakeTable:
        assert service == "dynamodb"
        return self

    def get_item(self, **request: Any) -> dict[str, Any]:
        assert request["ConsistentRead"] is True and request["Key"] == {"trackerId": {"S": TRACKER_ID}}
        self.reads.append(self.clock.now)
        failure = self.fail(len(self.reads))
        if failure is not None:
            raise failure
        if self.missing:
            return {}
        settled = self.settle_at is not None and self.clock.now >= self.settle_at
        item = {
            "trackerId": {"S": TRACKER_ID},
            "operation": {"S": "transfer"},
            "status": {"S": self.final_status if settled else "RUNNING"},
            "step": {"S": "DONE" if settled else "CREDITING"},
            "stepsDone": {"N": "3" if settled else "1"},
            "stepsTotal": {"N": "3"},
            "createdAt": {"N": str(CREATED)},
            "expiresAt": {"N": str(CREATED + 86400)},
        }
        return {"Item": item}


class Context:
    """A Lambda context whose remaining time runs down on the fake clock."""

    function_name = "OutcomeWaiterFunction"
    aws_request_id = "33333333-4444-5555-6666-777777777777"
    memory_limit_in_mb = 128
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:OutcomeWaiterFunction"

    def __init__(self, clock: FakeClock, timeout_seconds: float) -> None:
        self.clock = clock
        self.deadline = clock.now + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - self.clock.now) * 1000))


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeClock]:
    fake = FakeClock()
    monkeypatch.setattr(aws, "clock", fake.monotonic)
    monkeypatch.setattr(aws, "sleep", fake.sleep)
    monkeypatch.setattr(outcome, "wall_clock", fake.wall)
    monkeypatch.setenv("CONNECT_ASYNC_TIMEOUT_SECONDS", "60")
    monkeypatch.setenv("MAX_HOLD_SECONDS", "600")
    config.get_settings.cache_clear()
    yield fake
    config.get_settings.cache_clear()


def table(monkeypatch: pytest.MonkeyPatch, clock: FakeClock, settle_at: float | None, **options: Any) -> FakeTable:
    fake = FakeTable(clock, settle_at, **options)
    monkeypatch.setattr(aws, "client", fake)
    return fake


def wait(clock: FakeClock, timeout_seconds: float = 60, tracker_id: str = TRACKER_ID) -> dict[str, str]:
    event = load_event("outcome-waiter.json")
    event["Details"]["Parameters"] = {"trackerId": tracker_id}
    answer: dict[str, str] = outcome_waiter.handler(event, Context(clock, timeout_seconds))
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in answer.items()), answer
    assert len(json.dumps(answer).encode()) < MAX_ANSWER_BYTES
    return answer


@pytest.mark.parametrize("settle_at", [0.0, 0.1, 2.05, 17.3, 50.0])
def test_answers_the_final_status_within_one_poll_of_settlement(
    settle_at: float, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = table(monkeypatch, clock, settle_at)
    answer = wait(clock)
    assert (answer["status"], answer["keepWaiting"], answer["step"]) == ("SUCCEEDED", "false", "DONE")
    assert settle_at <= clock.now <= settle_at + outcome.POLL_INTERVAL_SECONDS
    assert len(fake.reads) == int(settle_at / outcome.POLL_INTERVAL_SECONDS + 1e-9) + 1 + (settle_at % 0.3 > 1e-9)
    assert answer["reads"] == str(len(fake.reads))
    assert all(pause == outcome.POLL_INTERVAL_SECONDS for pause in clock.sleeps)


def test_a_failed_transfer_is_answered_the_same_way(clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    table(monkeypatch, clock, 1.0, status="FAILED")
    assert wait(clock)["status"] == "FAILED"


@pytest.mark.parametrize(
    ("timeout_seconds", "budget"),
    [
        (60, 60 - ASYNC_CONNECT_MARGIN_SECONDS - 0.3),  # Connect's 60 s block ends first (its clock began earlier)
        (58, 60 - ASYNC_CONNECT_MARGIN_SECONDS - 0.3),
        (20, 20 - 0.3),  # a shorter Lambda Timeout ends first
        (3, 3 - 0.3),
    ],
)
def test_not_final_answers_keep_waiting_a_margin_before_the_budget(
    timeout_seconds: float, budget: float, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = table(monkeypatch, clock, None)
    answer = wait(clock, timeout_seconds)
    assert (answer["status"], answer["keepWaiting"], answer["step"]) == ("RUNNING", "true", "CREDITING")
    # The last read began with a whole attempt (connect + read timeout) still inside the budget; no read is
    # wasted by stopping much earlier than that.
    assert fake.reads[-1] + aws.ATTEMPT_SECONDS <= budget + 1e-9
    assert clock.now + aws.ATTEMPT_SECONDS + outcome.POLL_INTERVAL_SECONDS > budget
    assert clock.now < timeout_seconds and clock.now < 60 - ASYNC_CONNECT_MARGIN_SECONDS
    assert int(answer["waitedSeconds"]) == int(clock.now)


def test_throttled_reads_back_off_with_jitter_up_to_a_cap(clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = table(monkeypatch, clock, 0.0)
    fake.fail = lambda n: _throttled("GetItem") if n <= 6 else None
    answer = wait(clock)
    assert answer["status"] == "SUCCEEDED" and len(fake.reads) == 7
    assert all(outcome.POLL_INTERVAL_SECONDS <= pause <= outcome.BACKOFF_CAP_SECONDS for pause in clock.sleeps)
    assert sum(clock.sleeps) > 6 * outcome.POLL_INTERVAL_SECONDS  # slower than the healthy pace


def test_backoff_grows_exponentially_and_is_capped() -> None:
    def top(low: float, high: float) -> float:
        return high

    caps = [outcome.backoff_seconds(n, rand=top) for n in range(6)]
    assert caps == [0.3, 0.6, 1.2, 2.0, 2.0, 2.0]
    assert all(outcome.backoff_seconds(n, rand=lambda low, high: low) == 0.3 for n in range(1, 6))


def test_after_a_throttled_read_a_good_one_returns_to_the_healthy_pace(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = table(monkeypatch, clock, 5.0)
    fake.fail = lambda n: _throttled("GetItem") if n in (2, 3) else None
    assert wait(clock)["status"] == "SUCCEEDED"
    assert clock.sleeps[-1] == outcome.POLL_INTERVAL_SECONDS and clock.sleeps[0] == outcome.POLL_INTERVAL_SECONDS


def test_no_read_succeeding_answers_throttled_before_the_budget(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = table(monkeypatch, clock, 0.0)
    fake.fail = lambda n: _throttled("GetItem")
    answer = wait(clock)
    assert (answer["status"], answer["errorCode"], answer["retryable"]) == ("ERROR", "THROTTLED", "true")
    assert clock.now + aws.ATTEMPT_SECONDS <= 60 - ASYNC_CONNECT_MARGIN_SECONDS
    assert len(fake.reads) < 60 / outcome.POLL_INTERVAL_SECONDS


def test_throttling_after_a_good_read_still_answers_keep_waiting(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = table(monkeypatch, clock, None)
    fake.fail = lambda n: _throttled("GetItem") if n > 1 else None
    answer = wait(clock, 10)
    assert (answer["status"], answer["keepWaiting"]) == ("RUNNING", "true")


def test_a_refusal_is_answered_at_once(clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = table(monkeypatch, clock, None)
    denied = {"Error": {"Code": "AccessDeniedException", "Message": "no"}, "ResponseMetadata": {"HTTPStatusCode": 400}}
    fake.fail = lambda n: ClientError(denied, "GetItem")
    answer = wait(clock)
    assert (answer["status"], answer["errorCode"]) == ("ERROR", "DEPENDENCY_ERROR")
    assert len(fake.reads) == 1 and clock.now == 0


def test_no_such_tracker_is_answered_at_once(clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = table(monkeypatch, clock, None)
    fake.missing = True
    answer = wait(clock)
    assert (answer["status"], answer["keepWaiting"]) == ("NOT_FOUND", "false")
    assert len(fake.reads) == 1
    # Not a tracker id at all: no read.
    assert wait(clock, tracker_id="../etc/passwd")["status"] == "NOT_FOUND" and len(fake.reads) == 1


def test_a_caller_on_hold_too_long_is_answered_at_once(clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAX_HOLD_SECONDS", "10")
    config.get_settings.cache_clear()
    fake = table(monkeypatch, clock, None)
    clock.now = 6.0  # wall clock: 11 s after the row was created
    answer = wait(clock)
    assert (answer["keepWaiting"], answer["holdExceeded"]) == ("false", "true") and len(fake.reads) == 1


def test_reads_are_bounded_even_if_time_stood_still(clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = table(monkeypatch, clock, None)
    monkeypatch.setattr(aws, "sleep", lambda seconds: None)
    assert wait(clock)["keepWaiting"] == "true"
    assert len(fake.reads) == outcome.MAX_READS


def test_a_bad_event_is_refused_without_a_read(clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = table(monkeypatch, clock, 0.0)
    answer = outcome_waiter.handler({"Details": "nope"}, Context(clock, 60))
    assert (answer["status"], answer["errorCode"]) == ("REJECTED", "INVALID_EVENT") and fake.reads == []


def test_the_not_started_grace_outlasts_every_starter_run_the_flow_can_make() -> None:
    """A row left at STARTED is started (or ended) by status and the waiter only once no starter run can still
    be in flight: the flow's "Start transfer" visits (its "Start attempts" loop) each wait at most the block's
    InvocationTimeLimitSeconds, a run started in the last one goes on for at most the starter's Timeout, and
    "One moment, please." between visits takes a couple of seconds."""
    from pathlib import Path

    from holdline_local.template import load_template

    repo = Path(__file__).resolve().parents[2]
    actions = {a["Identifier"]: a for a in json.loads((repo / "flows" / "transfer-flow.json").read_text())["Actions"]}
    visits = int(actions["Start attempts"]["Parameters"]["LoopCount"])
    block = int(actions["Start transfer"]["Parameters"]["InvocationTimeLimitSeconds"])
    starter_timeout = int(load_template()["Resources"]["StarterFunction"]["Properties"]["Timeout"])
    prompt_seconds = 2
    latest_run_ends = visits * block + (visits - 1) * prompt_seconds + starter_timeout
    assert config.Settings().not_started_grace_seconds >= latest_run_ends
