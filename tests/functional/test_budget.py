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
from holdline.dal.aws import MIN_ATTEMPT_SECONDS
from holdline.handlers import starter, status
from holdline.logic.starter import tracker_id_for
from holdline_local.stack import LocalStack
from tests.faults import THROTTLE, DeadlineContext, FaultyClients, error, slow, slow_until_left, throttle
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


def timed_throttle(clock: FakeClock, attempts: list[tuple[float, float]]) -> Any:
    """Throttles every call, noting when each attempt began and the longest its client would wait (connect +
    read timeout): what a hung attempt would take."""

    def fault(real: Any, operation: str) -> Any:
        connect, read = aws.attempt_timeouts()
        attempts.append((clock.now, connect + read))
        return THROTTLE(real, operation)

    return fault


@pytest.mark.parametrize("seconds", [0.6, 1.2, 2.5, 3.0, 4.7, 5.7])
def test_every_attempt_fits_what_is_left_of_the_budget(
    seconds: float, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before each attempt, the first included: its client's connect + read timeouts fit in what is left, so even
    a hung attempt ends inside the budget; retries go on with shorter attempts until not even the shortest fits."""
    attempts: list[tuple[float, float]] = []
    faults = FaultyClients(lambda service: NullClient()).always_on(
        "stepfunctions", "start_execution", timed_throttle(clock, attempts)
    )
    monkeypatch.setattr(aws, "client", faults)
    deadline = clock.now + seconds
    with aws.budget(seconds), pytest.raises(ClientError) as raised:
        aws.call("stepfunctions", "start_execution", name="x")
    assert raised.value.response["Error"]["Code"] == "ThrottlingException"
    assert len(attempts) == len(clock.sleeps) + 1 and 1 <= len(attempts) <= aws.MAX_ATTEMPTS
    for began, longest in attempts:
        assert began + longest <= deadline + 1e-9, (began - 1000.0, longest, seconds)
    if seconds >= aws.ATTEMPT_SECONDS:
        assert attempts[0][1] == aws.ATTEMPT_SECONDS  # a first attempt that fits whole gets the whole timeouts
    # Retries went on while anything fitted: the last one was short, or it made all the attempts it may.
    assert len(attempts) == aws.MAX_ATTEMPTS or attempts[-1][1] < aws.ATTEMPT_SECONDS


def test_no_attempt_starts_that_cannot_fit(clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    """Less left than the shortest attempt: the call is not made at all (it could only end past the budget, or
    land after the flow gave up), and the error is a transient one the adapter answers DEPENDENCY_TIMEOUT to."""
    faults = FaultyClients(lambda service: NullClient())
    monkeypatch.setattr(aws, "client", faults)
    with aws.budget(aws.MIN_ATTEMPT_SECONDS - 0.01), pytest.raises(aws.BudgetExhausted) as raised:
        aws.call("dynamodb", "put_item", TableName="t")
    assert faults.calls == [] and aws.is_transient(raised.value)
    assert "dynamodb.put_item" in str(raised.value)


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


def test_a_cold_starts_init_counts_against_connects_limit_not_the_lambdas() -> None:
    """Connect's clock runs from when it invoked, Init included; Lambda's Timeout (the context's remaining time)
    starts after Init. So the Init already spent comes off Connect's limit, not off the remaining time."""
    settings = Settings(connect_timeout_seconds=6)
    assert budget_seconds(DeadlineContext(6000), settings, init_seconds=1.5) == pytest.approx(
        6 - 1.5 - ANSWER_RESERVE_SECONDS, abs=0.05
    )
    # The Lambda's own remaining time still bounds it when that is shorter.
    assert budget_seconds(DeadlineContext(2000), settings, init_seconds=1.5) == pytest.approx(1.7, abs=0.05)
    assert budget_seconds(DeadlineContext(6000), settings, init_seconds=7.0) == 0.0


_COLD_START = """
import json, os, sys, time
began = time.monotonic()
import holdline.config                      # the first of our modules a handler imports: Init reaches our code
time.sleep(float(sys.argv[2]))              # a slow Init (imports, clients)
from holdline.connect import connect_handler
from holdline.dal import aws
from holdline.dal.aws import MIN_ATTEMPT_SECONDS

seen = []

@connect_handler                            # the handler module is built: Init ends
def body(event, context):
    seen.append(aws.remaining_seconds())
    return {"status": "OK"}

init = time.monotonic() - began

class Context:
    def get_remaining_time_in_millis(self):
        return 60_000

event = {"Details": {"ContactData": {"ContactId": "c-1"}, "Parameters": {}}}
for _ in range(2):
    assert body(event, Context()) == {"status": "OK"}
print(json.dumps({"init": init, "seen": seen}))
"""


@pytest.mark.parametrize(
    ("initialization", "counted"), [("on-demand", True), ("provisioned-concurrency", False), ("snap-start", False)]
)
def test_the_first_invocation_of_a_new_environment_subtracts_its_init(
    initialization: str, counted: bool, tmp_path: Any
) -> None:
    """A fresh interpreter, as a new execution environment is: its first invocation's budget is Connect's limit
    less the Init it waited for (measured from the first import of our code to the handler being built); the next
    invocation has the whole limit. Provisioned concurrency and SnapStart initialise ahead of any invocation, so
    nobody waited for their Init (Lambda's "Defined runtime environment variables": AWS_LAMBDA_INITIALIZATION_TYPE)."""
    import json
    import os
    import subprocess
    import sys

    script = tmp_path / "cold.py"
    script.write_text(_COLD_START)
    env = {
        **os.environ,
        "AWS_LAMBDA_INITIALIZATION_TYPE": initialization,
        "CONNECT_TIMEOUT_SECONDS": "4",
        "AWS_DEFAULT_REGION": "us-east-1",
        "POWERTOOLS_TRACE_DISABLED": "true",
    }
    done = subprocess.run(
        [sys.executable, str(script), "x", "1.0"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    facts = json.loads(done.stdout.strip().splitlines()[-1])
    first, second = facts["seen"]
    whole = 4 - ANSWER_RESERVE_SECONDS
    assert second == pytest.approx(whole, abs=0.05)
    if counted:
        assert whole - facts["init"] - 0.05 <= first <= whole - 1.0 + 0.05
    else:
        assert first == pytest.approx(whole, abs=0.05)


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
    """The row exists, so the ERROR answer names it: the flow's retry, its lookup and an agent can find it."""
    event = connect_event(GOOD)
    contact = event["Details"]["ContactData"]["ContactId"]
    faults = FaultyClients(aws.client).always_on("stepfunctions", "start_execution", THROTTLE)
    monkeypatch.setattr(aws, "client", faults)
    began = time.monotonic()
    tracker_id = tracker_id_for("transfer", contact, contact)
    assert call(starter.handler, event, DeadlineContext(3000)) == {**THROTTLED, "trackerId": tracker_id}
    assert time.monotonic() - began < 2.8
    assert tracker_row(stack, tracker_id) is not None
    assert faults.count("stepfunctions", "start_execution") >= 2
    monkeypatch.setattr(aws, "client", faults.real)  # the throttling ends; the flow tries again
    answer = call(starter.handler, event, DeadlineContext(3000))
    assert answer["status"] == "STARTED" and answer["trackerId"] == tracker_id
    assert len(executions(stack, answer["trackerId"])) == 1
    assert wait_for_execution(stack, answer["trackerId"])["status"] == "SUCCEEDED"


def test_a_budget_spent_by_the_row_write_answers_with_the_tracker_and_starts_nothing(
    stack: LocalStack, connect_event: Any, call: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A slow PutItem leaves less than the shortest attempt: StartExecution is not attempted (it could land after
    Connect gave up), and the answer names the row that was written."""
    event = connect_event(GOOD)
    contact = event["Details"]["ContactData"]["ContactId"]
    context = DeadlineContext(1500)
    # The write ends with less than the shortest attempt left (whatever the machine's load spent before it), so
    # the outcome does not hang on a wall-clock margin; what stays timed is the answer before the deadline.
    left_after_write = ANSWER_RESERVE_SECONDS + MIN_ATTEMPT_SECONDS - 0.05
    faults = FaultyClients(aws.client).on("dynamodb", "put_item", slow_until_left(context, left_after_write))
    monkeypatch.setattr(aws, "client", faults)
    answer = call(starter.handler, event, context)
    assert context.get_remaining_time_in_millis() > 0  # answered before the Lambda's deadline
    tracker_id = tracker_id_for("transfer", contact, contact)
    assert answer["status"] == "ERROR" and answer["errorCode"] == "DEPENDENCY_TIMEOUT"
    assert answer["trackerId"] == tracker_id and answer["retryable"] == "true"
    assert faults.count("stepfunctions", "start_execution") == 0 and executions(stack, tracker_id) == []


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
    # 1.7 s left: a whole 2 s attempt does not fit, but shorter ones do: retried, and still inside the limit.
    assert faults.count("dynamodb", "get_item") >= 2


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
        self.clients = aws.Clients(
            endpoint_url=self.url, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
        )

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                self.held.append(self.server.accept()[0])
            except OSError:
                continue

    def client(self, service: str) -> Any:
        """The production clients (one per attempt length, as :func:`aws.call` chooses), pointed here."""
        return self.clients(service)

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        for conn in self.held:
            conn.close()
        self.server.close()


@pytest.fixture
def black_hole(monkeypatch: pytest.MonkeyPatch) -> Iterator[BlackHole]:
    hole = BlackHole()
    for service in ("dynamodb", "stepfunctions"):  # created before the clock starts, as a warm container's are
        for timeouts in aws.ATTEMPT_TIMEOUTS:
            with aws.attempt(timeouts):
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
    # A whole attempt, ended by the short read timeout (not botocore's 60 s), then shorter ones in what was left
    # (how many fit depends on the jittered backoff between them); all inside the budget.
    assert aws.READ_TIMEOUT - 0.1 <= elapsed < 2.5 - ANSWER_RESERVE_SECONDS + 0.1
    assert 2 <= len(black_hole.held) <= 3


@pytest.mark.parametrize(("lambda_ms", "attempts"), [(500, 0), (600, 1), (1000, 1), (1500, 1)])
def test_a_first_attempt_with_little_time_left_is_shortened_to_fit(
    connect_event: Any, black_hole: BlackHole, lambda_ms: int, attempts: int
) -> None:
    """Less time left than one whole attempt (a slow Init, a late retry): the first attempt gets timeouts that
    end inside the budget instead of its full 0.5 s + 1.5 s, which would outlive the Lambda itself; with less
    left than the shortest attempt, none is made."""
    began = time.monotonic()
    answer = status.handler(connect_event({"trackerId": "transfer-0123456789abcdef"}), DeadlineContext(lambda_ms))
    elapsed = time.monotonic() - began
    assert answer["errorCode"] == "DEPENDENCY_TIMEOUT" and answer["retryable"] == "true"
    assert elapsed < lambda_ms / 1000 - ANSWER_RESERVE_SECONDS + 0.1
    # At least one attempt when one fits (a short one may follow in what is left), none when none fits.
    assert len(black_hole.held) >= 1 if attempts else len(black_hole.held) == 0


def test_the_starter_never_outlives_its_lambda_on_a_hung_dependency(connect_event: Any, black_hole: BlackHole) -> None:
    """As many attempts as fit in the Lambda's remaining time, then an answer."""
    began = time.monotonic()
    answer = starter.handler(connect_event(GOOD), DeadlineContext(4000))
    elapsed = time.monotonic() - began
    assert answer["errorCode"] == "DEPENDENCY_TIMEOUT" and answer["retryable"] == "true"
    assert elapsed < 4.0
    assert len(black_hole.held) >= 2  # it retried the (idempotent) conditional write


def test_the_local_timeout_scale_leaves_the_connect_facing_functions_their_timeout(
    stack: LocalStack, connect_event: Any
) -> None:
    """The local stack's timeout scale compresses the saga's time; Connect's block limits stay as written, and so
    do the Timeouts of the functions Connect invokes: scaled to 0.1, the starter would have 0.6 s, less than one
    AWS attempt after the answer reserve, while the simulated Connect still waits 6 s."""
    from holdline_local import moto_adapter

    previous = moto_adapter.set_timeout_scale(0.1)
    try:
        answer = stack.invoke("StarterFunction", connect_event(GOOD))
        assert answer["status"] == "STARTED", answer
        assert stack.invoke("StatusFunction", connect_event({"trackerId": answer["trackerId"]}))["trackerId"]
    finally:
        moto_adapter.set_timeout_scale(previous)
    assert stack.runtime is not None
    assert {
        "StarterFunction",
        "StatusFunction",
        "ResultsFunction",
        "OutcomeWaiterFunction",
        "ConfigLookupFunction",
    } == (stack.runtime.unscaled)
    assert wait_for_execution(stack, answer["trackerId"])["status"] == "SUCCEEDED"


def test_template_keeps_the_connect_facing_functions_inside_connect_limits() -> None:
    from holdline_local.template import read_stack

    functions = read_stack().functions
    for name in ("StarterFunction", "StatusFunction", "ResultsFunction"):
        spec = functions[name]
        assert spec.timeout <= 8, name  # Connect waits 8 s at most
        connect_timeout = Settings(connect_timeout_seconds=spec.environment["CONNECT_TIMEOUT_SECONDS"])
        assert 1 <= connect_timeout.connect_timeout_seconds <= 8, name
