"""Privacy over a whole call: every log line of starter, saga legs, status and results (what each function
printed in its own execution environment: what CloudWatch Logs would hold), the answers, and the executions'
input and history show account and phone numbers masked (last four only), and the logs carry the correlation
ids (ContactId, trackerId, execution name)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from holdline_local.stack import LocalStack
from tests.helpers import history_text, wait_for_execution

# Letters next to the digits: no hex id, uuid or timestamp can contain a fragment of these by chance.
SOURCE = "CHK-QWXYZ7391"
DESTINATION = "SAV-PRVKJ5820"
UNKNOWN = "SAV-NOPEQ4040"  # its bank answers every credit with a 503: the debit is refunded
PHONE = "+447700900123"


def _leaks(text: str, secret: str) -> list[str]:
    """Any piece of ``secret`` longer than its last four characters: the masked form shows no more."""
    pieces = [secret[:-4], *(secret[-k:] for k in range(5, len(secret) + 1))]
    if secret.startswith("+"):
        pieces = [p for p in pieces if len(p.lstrip("+")) >= 7]  # a phone's short digit runs are not unique
    return [piece for piece in pieces if piece and piece in text]


def _call(stack: LocalStack, connect_event: Any, to_account: str) -> list[dict[str, str]]:
    """One call as the flow makes it, through the Lambda API: start, poll until final, read the result."""
    event = connect_event({"fromAccount": SOURCE, "toAccount": to_account, "amount": "7.25", "currency": "USD"})
    event["Details"]["ContactData"]["CustomerEndpoint"]["Address"] = PHONE
    event["Details"]["ContactData"]["Attributes"]["callerNumber"] = PHONE
    answers = [stack.invoke("StarterFunction", event)]
    assert answers[0]["status"] == "STARTED", answers[0]
    poll = connect_event({}, attributes={"trackerId": answers[0]["trackerId"]}, contact_id=event_contact(event))
    poll["Details"]["ContactData"]["CustomerEndpoint"]["Address"] = PHONE
    answers.append(stack.invoke("StatusFunction", poll))  # a poll while the saga runs
    wait_for_execution(stack, answers[0]["trackerId"])
    answers.append(stack.invoke("StatusFunction", poll))
    assert answers[-1]["keepWaiting"] == "false"
    answers.append(stack.invoke("ResultsFunction", poll))
    return answers


def event_contact(event: dict[str, Any]) -> str:
    return str(event["Details"]["ContactData"]["ContactId"])


def _function_logs(stack: LocalStack) -> list[str]:
    assert stack.runtime is not None
    return [line.text for name in stack.runtime.stats for line in stack.runtime.logs(name)]


def test_a_full_call_never_shows_an_account_or_phone_number(stack: LocalStack, connect_event: Any) -> None:
    assert stack.bank is not None
    for account in (SOURCE, DESTINATION, UNKNOWN):
        stack.bank.open_account(account, Decimal("100.00"))
    # The validation leg looks both accounts up before any money moves, so an unknown destination is refused
    # before the debit; a credit the bank keeps refusing is what takes the refund path.
    credit_down = stack.bank.inject("5xx", leg="credit", account=UNKNOWN)
    ok = _call(stack, connect_event, DESTINATION)
    failed = _call(stack, connect_event, UNKNOWN)
    assert ok[-1]["status"] == "SUCCEEDED"
    stack.bank.clear_faults(credit_down)
    assert failed[-1]["status"] == "FAILED" and failed[-1]["refunded"] == "true"
    trackers = [ok[0]["trackerId"], failed[0]["trackerId"]]
    assert stack.pump is not None
    stack.pump.drain()  # the tracker stream's notifier has run for the failed transfer too

    lines = _function_logs(stack)
    records = [json.loads(line) for line in lines if line.startswith("{")]
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
        legs = {"DebitFunction", "RefundFunction" if tracker_id == trackers[1] else "CreditFunction"}
        assert legs <= {r.get("function_name") for r in mine}
        # Every line a leg logs for this transfer names its execution (each function has a process of its own).
        for record in (r for r in mine if r.get("function_name") in legs):
            assert record.get("executionName") == tracker_id, record
        connect_lines = [
            r for r in mine if r.get("message") in {"request started", "status answered", "results answered"}
        ]
        assert {r["message"] for r in connect_lines} == {"request started", "status answered", "results answered"}
        for line in connect_lines:
            assert line.get("contactId"), line
