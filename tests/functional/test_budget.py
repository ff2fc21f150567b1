"""Inside Connect's time budget: short timeouts, throttled calls retried with exponential backoff and full
jitter, and an answer (THROTTLED / DEPENDENCY_TIMEOUT, retryable) before the Lambda or Connect gives up.

Throttling and slowness are injected around the real clients (tests/faults.py) or come from a real socket
that never answers; the retry loop, the timeouts and the answers are the production code's.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from holdline import config
from holdline.config import Settings
from holdline.connect import ANSWER_RESERVE_SECONDS, budget_seconds
from holdline.dal import aws
from holdline.handlers import starter, status
from holdline.logic.starter import tracker_id_for
from holdline_local.stack import LocalStack
from tests.faults import THROTTLE, DeadlineContext, FaultyClients, error, slow, throttle
from tests.helpers import executions, tracker_row, wait_for_execution

GOOD = {"fromAccount": "CHK-00011111", "toAccount": "SAV-00022222", "amount": "3.00", "currency": "USD"}
THROTTLED = {
    "status": "ERROR",
    "errorCode": "THROTTLED",
    "errorMessage": "We are very busy right now.",
    "retryable": "true",
}


# ---- the retry loop, on a fake clock: exact arithmetic ---------------------------------------------------
class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class NullClient:
    """Answers every operation with an empty dict, counting nothing: faults decide what fails."""

    def __getattr__(self, name: str) -> Any:
        return lambda **kwargs: {}


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(aws, "clock", fake)
    monkeypatch.setattr(aws, "sleep", fake.sleep)
    return fake


def test_full_jitter_draws_below_an_exponential_cap() -> None:
    caps = [aws.backoff_delay(n, rand=lambda low, high: high) for n in range(1, 8)]
    assert caps == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0]
    assert all(aws.backoff_delay(n, rand=lambda low, high: low) == 0.0 for n in range(1, 8))
    draws = [aws.backoff_delay(3) for _ in range(200)]
    assert all(0.0 <= d <= 0.4 for d in draws) and len(set(draws)) > 150  # jittered, not a fixed schedule


def test_throttled_calls_are_retried_then_succeed(clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    faults = FaultyClients(lambda service: NullClient()).on("dynamodb", "get_item", THROTTLE, THROTTLE, THROTTLE)
    monkeypatch.setattr(aws, "client", faults)
    with aws.budget(5.0):
        assert aws.call("dynamodb", "get_item", Key={}) == {}
    assert faults.count("dynamodb", "get_item") == 4 and len(clock.sleeps) == 3


@pytest.mark.parametrize("seconds", [2.5, 3.0, 4.7, 5.7])
def test_retries_stop_while_a_whole_attempt_still_fits(
    seconds: float, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    faults = FaultyClients(lambda service: NullClient()).always_on("stepfunctions", "start_execution", THROTTLE)
    monkeypatch.setattr(aws, "client", faults)
    start = clock.now
    with aws.budget(seconds), pytest.raises(ClientError) as raised:
        aws.call("stepfunctions", "start_execution", name="x")
    assert raised.value.response["Error"]["Code"] == "ThrottlingException"
    attempts = faults.count("stepfunctions", "start_execution")
    assert attempts >= 2 and len(clock.sleeps) == attempts - 1
    # The last attempt began early enough that even a hung one (connect + read timeout) ends in budget.
    assert clock.now - start + aws.ATTEMPT_SECONDS <= seconds
    assert attempts <= aws.MAX_ATTEMPTS


def test_without_a_budget_retries_are_still_bounded(clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        aws, "client", FaultyClients(lambda s: NullClient()).always_on("dynamodb", "get_item", THROTTLE)
    )
    with pytest.raises(ClientError):
        aws.call("dynamodb", "get_item")
    assert clock.now - 1000.0 <= aws.DEFAULT_BUDGET_SECONDS and len(clock.sleeps) < aws.MAX_ATTEMPTS


@pytest.mark.parametrize(
    "fault",
    [
        error("AccessDeniedException"),
        error("ValidationException"),
        error("ConditionalCheckFailedException"),
        error("ExecutionLimitExceeded"),
    ],
)
def test_refusals_are_not_retried(fault: Any, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    faults = FaultyClients(lambda service: NullClient()).always_on("dynamodb", "put_item", fault)
    monkeypatch.setattr(aws, "client", faults)
    with aws.budget(5.0), pytest.raises(ClientError):
        aws.call("dynamodb", "put_item")
    assert faults.count("dynamodb", "put_item") == 1 and clock.sleeps == []


@pytest.mark.parametrize(
    "fault", [throttle("ProvisionedThroughputExceededException"), error("InternalServerError", 500)]
)
def test_server_faults_and_dynamodb_throttling_are_retried(
    fault: Any, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    faults = FaultyClients(lambda service: NullClient()).on("dynamodb", "put_item", fault)
    monkeypatch.setattr(aws, "client", faults)
    with aws.budget(5.0):
        aws.call("dynamodb", "put_item")
    assert faults.count("dynamodb", "put_item") == 2


def test_budget_is_the_lambda_remaining_time_or_connect_timeout_whichever_is_first() -> None:
    settings = Settings(connect_timeout_seconds=8)
    assert budget_seconds(DeadlineContext(5000), settings) == pytest.approx(5.0 - ANSWER_RESERVE_SECONDS, abs=0.05)
    # A Lambda timeout set above Connect's limit does not let the starter outlive the flow's block.
    assert budget_seconds(DeadlineContext(60_000), settings) == pytest.approx(8 - ANSWER_RESERVE_SECONDS)
    assert budget_seconds(DeadlineContext(60_000), Settings(connect_timeout_seconds=3)) == pytest.approx(2.7)
    assert budget_seconds(DeadlineContext(100), settings) == 0.0
    assert budget_seconds(object(), Settings(connect_timeout_seconds=5)) == pytest.approx(4.7)


def test_clients_have_short_timeouts_and_no_sdk_retries() -> None:
    cfg = aws.new_client("dynamodb", region_name="us-east-1").meta.config
    assert cfg.connect_timeout + cfg.read_timeout == aws.ATTEMPT_SECONDS <= 2
    assert cfg.retries["total_max_attempts"] == 1


# ---- the handlers on the local stack ----------------------------------------------------------------------
def test_throttled_start_is_retried_inside_the_invocation(
    stack: LocalStack, connect_event: Any, call: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    faults = (
        FaultyClients(aws.client)
        .on("dynamodb", "put_item", THROTTLE, THROTTLE)
        .on("stepfunctions", "start_execution", THROTTLE, throttle("TooManyRequestsException"))
    )
    monkeypatch.setattr(aws, "client", faults)
    began = time.monotonic()
    answer = call(starter.handler, connect_event(GOOD), DeadlineContext(6000))
    assert answer["status"] == "STARTED", answer
    assert time.monotonic() - began < 5.7
    assert faults.count("dynamodb", "put_item") == 3 and faults.count("stepfunctions", "start_execution") == 3
    assert [e["name"] for e in executions(stack, answer["trackerId"])] == [answer["trackerId"]]
    assert wait_for_execution(stack, answer["trackerId"])["status"] == "SUCCEEDED"


def test_dynamodb_throttled_past_the_budget_answers_throttled_and_writes_nothing(
    stack: LocalStack, connect_event: Any, call: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    event = connect_event(GOOD)
    faults = FaultyClients(aws.client).always_on("dynamodb", "put_item", THROTTLE)
    monkeypatch.setattr(aws, "client", faults)
    began = time.monotonic()
    answer = call(starter.handler, event, DeadlineContext(3000))
    elapsed = time.monotonic() - began
    assert answer == THROTTLED
    assert elapsed < 3.0 - ANSWER_RESERVE_SECONDS + 0.1  # answered before the Lambda's time ran out
    assert faults.count("dynamodb", "put_item") >= 2  # it did retry before giving up
    assert faults.count("stepfunctions", "start_execution") == 0
    contact = event["Details"]["ContactData"]["ContactId"]
    assert tracker_row(stack, tracker_id_for("transfer", contact, contact)) is None


def test_step_functions_throttled_past_the_budget_then_the_flow_retry_converges(
    stack: LocalStack, connect_event: Any, call: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    event = connect_event(GOOD)
    faults = FaultyClients(aws.client).always_on("stepfunctions", "start_execution", THROTTLE)
    monkeypatch.setattr(aws, "client", faults)
    began = time.monotonic()
    assert call(starter.handler, event, DeadlineContext(3000)) == THROTTLED
    assert time.monotonic() - began < 2.8
    assert faults.count("stepfunctions", "start_execution") >= 2
    monkeypatch.setattr(aws, "client", faults.real)  # the throttling ends; the flow tries again
    answer = call(starter.handler, event, DeadlineContext(3000))
    assert answer["status"] == "STARTED"
    assert len(executions(stack, answer["trackerId"])) == 1
    assert wait_for_execution(stack, answer["trackerId"])["status"] == "SUCCEEDED"


def test_status_throttled_answers_throttled_within_connect_timeout(
    stack: LocalStack, connect_event: Any, call: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Lambda timeout above the flow's block timeout: Connect's limit (here 2 s) bounds the retries."""
    started = call(starter.handler, connect_event(GOOD), DeadlineContext(5000))
    short = Settings(connect_timeout_seconds=2)
    monkeypatch.setattr(config, "get_settings", lambda: short)
    faults = FaultyClients(aws.client).always_on("dynamodb", "get_item", THROTTLE)
    monkeypatch.setattr(aws, "client", faults)
    began = time.monotonic()
    answer = call(status.handler, connect_event({"trackerId": started["trackerId"]}), DeadlineContext(60_000))
    assert answer == THROTTLED
    assert time.monotonic() - began < 2.0
    assert faults.count("dynamodb", "get_item") == 1  # 1.7 s left cannot fit a 2 s attempt: no retry


def test_a_slow_dependency_within_budget_still_answers(
    stack: LocalStack, connect_event: Any, call: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = call(starter.handler, connect_event(GOOD), DeadlineContext(5000))
    monkeypatch.setattr(aws, "client", FaultyClients(aws.client).on("dynamodb", "get_item", slow(0.4)))
    began = time.monotonic()
    answer = call(status.handler, connect_event({"trackerId": started["trackerId"]}), DeadlineContext(4000))
    assert answer["status"] in {"RUNNING", "SUCCEEDED"} and time.monotonic() - began >= 0.4


class BlackHole:
    """An endpoint that accepts connections and never answers: only botocore's read timeout ends a call."""

    def __init__(self) -> None:
        self.server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(64)
        self.server.settimeout(0.05)
        self.held: list[socket.socket] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        self._clients: dict[str, Any] = {}

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                self.held.append(self.server.accept()[0])
            except OSError:
                continue

    def client(self, service: str) -> Any:
        """The production client configuration, pointed here (created before the clock starts)."""
        if service not in self._clients:
            self._clients[service] = aws.new_client(
                service,
                endpoint_url=self.url,
                region_name="us-east-1",
                aws_access_key_id="x",
                aws_secret_access_key="x",
            )
        return self._clients[service]

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        for conn in self.held:
            conn.close()
        self.server.close()


@pytest.fixture
def black_hole(monkeypatch: pytest.MonkeyPatch) -> Iterator[BlackHole]:
    hole = BlackHole()
    for service in ("dynamodb", "stepfunctions"):
        hole.client(service)
    # Only this test's thread talks to the black hole: the session's local stack keeps working in its own
    # threads (the stream pump, rule deliveries) and must neither reach it nor be counted as an attempt.
    test_thread = threading.get_ident()
    real = aws.client

    def client(service: str) -> Any:
        return hole.client(service) if threading.get_ident() == test_thread else real(service)

    monkeypatch.setattr(aws, "client", client)
    yield hole
    hole.close()


def test_a_hung_dependency_answers_dependency_timeout_in_budget(connect_event: Any, black_hole: BlackHole) -> None:
    began = time.monotonic()
    answer = status.handler(connect_event({"trackerId": "transfer-0123456789abcdef"}), DeadlineContext(2500))
    elapsed = time.monotonic() - began
    assert answer["status"] == "ERROR" and answer["errorCode"] == "DEPENDENCY_TIMEOUT" and answer["retryable"] == "true"
    # One attempt, ended by the short read timeout (not botocore's 60 s), and no second one that could not fit.
    assert aws.READ_TIMEOUT - 0.1 <= elapsed < 2.5
    assert len(black_hole.held) == 1


def test_the_starter_never_outlives_its_lambda_on_a_hung_dependency(connect_event: Any, black_hole: BlackHole) -> None:
    """As many attempts as fit in the Lambda's remaining time, then an answer."""
    began = time.monotonic()
    answer = starter.handler(connect_event(GOOD), DeadlineContext(4000))
    elapsed = time.monotonic() - began
    assert answer["errorCode"] == "DEPENDENCY_TIMEOUT" and answer["retryable"] == "true"
    assert elapsed < 4.0
    assert len(black_hole.held) >= 2  # it retried the (idempotent) conditional write


def test_template_keeps_the_connect_facing_functions_inside_connect_limits() -> None:
    from holdline_local.template import read_stack

    functions = read_stack().functions
    for name in ("StarterFunction", "StatusFunction", "ResultsFunction"):
        spec = functions[name]
        assert spec.timeout <= 8, name  # Connect waits 8 s at most
        connect_timeout = Settings(connect_timeout_seconds=spec.environment["CONNECT_TIMEOUT_SECONDS"])
        assert 1 <= connect_timeout.connect_timeout_seconds <= 8, name
