"""Privacy over a whole call: every structured log line of starter, saga legs, status and results, the
answers, and the executions' input and history show account and phone numbers masked (last four only),
and the logs carry the correlation ids (ContactId, trackerId, execution name)."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from holdline.handlers import results, starter, status
from holdline.observability import logger
from holdline_local.stack import LocalStack
from tests.helpers import history_text, wait_for_execution

# Letters next to the digits: no hex id, uuid or timestamp can contain a fragment of these by chance.
SOURCE = "CHK-QWXYZ7391"
DESTINATION = "SAV-PRVKJ5820"
UNKNOWN = "SAV-NOPEQ4040"  # its bank answers every credit with a 503: the debit is refunded
PHONE = "+447700900123"


class Collect(logging.Handler):
    """Every record the functions log, formatted exactly as Lambda would ship it (Powertools JSON)."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []
        self._guard = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        line = logger.registered_formatter.format(record)
        with self._guard:
            self.lines.append(line)


@pytest.fixture
def captured_logs() -> Iterator[Collect]:
    handler = Collect()
    stdlib_logger = logging.getLogger(logger.service)
    stdlib_logger.addHandler(handler)
    try:
        yield handler
    finally:
        stdlib_logger.removeHandler(handler)


def _leaks(text: str, secret: str) -> list[str]:
    """Any piece of ``secret`` longer than its last four characters: the masked form shows no more."""
    pieces = [secret[:-4], *(secret[-k:] for k in range(5, len(secret) + 1))]
    if secret.startswith("+"):
        pieces = [p for p in pieces if len(p.lstrip("+")) >= 7]  # a phone's short digit runs are not unique
    return [piece for piece in pieces if piece and piece in text]


def _call(stack: LocalStack, connect_event: Any, lambda_context: Any, to_account: str) -> list[dict[str, str]]:
    """One call as the flow makes it: start, poll until final, read the result."""
    event = connect_event({"fromAccount": SOURCE, "toAccount": to_account, "amount": "7.25", "currency": "USD"})
    event["Details"]["ContactData"]["CustomerEndpoint"]["Address"] = PHONE
    event["Details"]["ContactData"]["Attributes"]["callerNumber"] = PHONE
    answers = [starter.handler(event, lambda_context)]
    assert answers[0]["status"] == "STARTED", answers[0]
    poll = connect_event({}, attributes={"trackerId": answers[0]["trackerId"]}, contact_id=event_contact(event))
    poll["Details"]["ContactData"]["CustomerEndpoint"]["Address"] = PHONE
    # The hold prompt: the saga runs meanwhile. (Polling while it runs would interleave, in this one process,
    # log keys that on Lambda belong to separate sandboxes; Powertools' keys are process-wide.)
    wait_for_execution(stack, answers[0]["trackerId"])
    answers.append(status.handler(poll, lambda_context))
    assert answers[-1]["keepWaiting"] == "false"
    answers.append(results.handler(poll, lambda_context))
    return answers


def event_contact(event: dict[str, Any]) -> str:
    return str(event["Details"]["ContactData"]["ContactId"])


def test_a_full_call_never_shows_an_account_or_phone_number(
    stack: LocalStack, connect_event: Any, lambda_context: Any, captured_logs: Collect
) -> None:
    assert stack.bank is not None
    for account in (SOURCE, DESTINATION, UNKNOWN):
        stack.bank.open_account(account, Decimal("100.00"))
    # The validation leg now looks both accounts up before any money moves, so an unknown destination is
    # refused before the debit; a credit the bank keeps refusing is what still takes the refund path.
    credit_down = stack.bank.inject("5xx", leg="credit", account=UNKNOWN)

    # The tracker stream's notifier waits until the calls are over: the local stack runs every function in one
    # process, where Powertools' logger keys are shared, so a notifier running meanwhile in another thread could
    # clear the correlation keys of the lines under test (on Lambda each function has its own process).
    assert stack.pump is not None
    with stack.pump.paused():
        ok = _call(stack, connect_event, lambda_context, DESTINATION)
        failed = _call(stack, connect_event, lambda_context, UNKNOWN)
    assert ok[-1]["status"] == "SUCCEEDED"
    stack.bank.clear_faults(credit_down)
    assert failed[-1]["status"] == "FAILED" and failed[-1]["refunded"] == "true"
    trackers = [ok[0]["trackerId"], failed[0]["trackerId"]]

    lines = list(captured_logs.lines)
    records = [json.loads(line) for line in lines]
    everything = "\n".join(
        [*lines, json.dumps([ok, failed]), *(history_text(stack, tracker_id) for tracker_id in trackers)]
    )
    for secret in (SOURCE, DESTINATION, UNKNOWN, PHONE):
        assert _leaks(everything, secret) == [], secret
    # The masked forms are there: the logs still say which accounts moved money.
    assert "****7391" in everything and "****5820" in everything

    # Correlation: each function's lines carry the ids that tie a call, its tracker and its execution together.
    for tracker_id in trackers:
        mine = [r for r in records if r.get("trackerId") == tracker_id]
        functions = {r.get("function_name") for r in mine}
        assert {"DebitFunction", "RefundFunction" if tracker_id == trackers[1] else "CreditFunction"} <= functions
        # Every leg of the saga tags its lines with the execution. (Not "every line": the local stack runs all
        # functions in one process, where Powertools' logger keys are shared, so a function running at the same
        # moment in another thread, such as the stream's notifier, can clear them; on Lambda it cannot.)
        for leg in ("DebitFunction", "RefundFunction" if tracker_id == trackers[1] else "CreditFunction"):
            assert any(r.get("function_name") == leg and r.get("executionName") == tracker_id for r in mine), leg
        connect_lines = [
            r for r in mine if r.get("message") in {"request started", "status answered", "results answered"}
        ]
        assert {r["message"] for r in connect_lines} == {"request started", "status answered", "results answered"}
        for message in ("request started", "status answered", "results answered"):
            assert any(r.get("contactId") for r in connect_lines if r["message"] == message), message
