"""Property tests (hypothesis) of the Connect edge, on in-process fakes of DynamoDB and Step Functions that
keep their semantics (conditional writes, execution-name rules and idempotency).

- Any event either starts exactly one valid transfer (one row, one execution named after it, an input that
  carries no account number) or is rejected with a typed code, having written and started nothing.
- Replaying an event that started is the same answer and still one transfer.
- Every answer of every Connect-facing handler is a flat map of strings under 32 KB.
"""

from __future__ import annotations

import json
import re
import string
from decimal import Decimal
from typing import Any
from unittest import mock

from botocore.exceptions import ClientError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from holdline.config import get_settings
from holdline.connect import MAX_ANSWER_BYTES
from holdline.dal import aws
from holdline.handlers import outcome_waiter, results, starter, status
from holdline.models.requests import TransferRequest, parse_request
from tests.conftest import FakeLambdaContext, load_event

REJECTION_CODES = {
    "MISSING_PARAMETER",
    "INVALID_PARAMETER",
    "INVALID_ACCOUNT",
    "INVALID_AMOUNT",
    "LIMIT_EXCEEDED",
    "UNSUPPORTED_CURRENCY",
    "SAME_ACCOUNT",
    "UNKNOWN_OPERATION",
    "IDEMPOTENCY_CONFLICT",
    "INVALID_EVENT",
}
# Step Functions execution names: 1-80 characters, none of whitespace, brackets, wildcards, control
# characters or "#%\^|~`$&,;:/ (StartExecution API reference).
_BAD_NAME_CHARS = re.compile(r"[\s<>{}\[\]?*\"#%\\^|~`$&,;:/\x00-\x1f\x7f-\x9f]")


def _valid_execution_name(name: str) -> bool:
    return 1 <= len(name) <= 80 and not _BAD_NAME_CHARS.search(name)


class FakeAws:
    """DynamoDB's conditional PutItem and GetItem, Step Functions' named StartExecution: just enough."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}
        self.executions: dict[str, str] = {}

    def __call__(self, service: str) -> Any:
        return self

    def put_item(self, *, TableName: str, Item: dict[str, Any], ConditionExpression: str, **kw: Any) -> dict[str, Any]:
        key = Item["trackerId"]["S"]
        if key in self.rows:
            raise ClientError({"Error": {"Code": "ConditionalCheckFailedException"}, "Item": self.rows[key]}, "PutItem")
        json.dumps(Item)  # DynamoDB's wire format is JSON: a float or a Decimal object here would not go
        self.rows[key] = Item
        return {}

    def get_item(self, *, TableName: str, Key: dict[str, Any], ConsistentRead: bool) -> dict[str, Any]:
        assert ConsistentRead
        row = self.rows.get(Key["trackerId"]["S"])
        return {"Item": row} if row else {}

    def start_execution(self, *, stateMachineArn: str, name: str, input: str) -> dict[str, Any]:
        if not _valid_execution_name(name):
            raise ClientError({"Error": {"Code": "InvalidName"}}, "StartExecution")
        if name in self.executions and self.executions[name] != input:
            raise ClientError({"Error": {"Code": "ExecutionAlreadyExists"}}, "StartExecution")
        self.executions[name] = input
        return {"executionArn": f"arn:aws:states:us-east-1:123456789012:execution:TransferStateMachine:{name}"}


# ---- strategies ---------------------------------------------------------------------------------------
ACCOUNTS = st.sampled_from(["CHK-00012345", "SAV-00067890", "CHK-0001", "ab12", "X" * 34])
AMOUNTS = st.one_of(
    st.decimals(min_value=Decimal("0.01"), max_value=Decimal("6000"), places=2).map(str),
    st.integers(min_value=-10, max_value=10_000).map(str),
    st.sampled_from(["NaN", "Infinity", "1e3", "+5", "1,000.00", "\u0662\u0665", "0.001", ".5", "5000", "0"]),
)
GARBAGE = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=string.printable, max_size=20),
    st.text(min_size=1100, max_size=1200, alphabet="ab"),
    st.integers(),
    st.floats(allow_nan=True),
    st.booleans(),
    st.none(),
    st.lists(st.text(max_size=3), max_size=2),
    st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=2),
)
VALUES = {
    "fromAccount": st.one_of(ACCOUNTS, GARBAGE),
    "toAccount": st.one_of(ACCOUNTS, GARBAGE),
    "amount": st.one_of(AMOUNTS, GARBAGE),
    "currency": st.one_of(st.sampled_from(["USD", "EUR", "GBP", "CAD", "JPY", "", "usd"]), GARBAGE),
    "requestId": st.one_of(st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True), GARBAGE),
    "operation": st.one_of(st.sampled_from(["transfer", "", "Transfer", "refund"]), GARBAGE),
}
VALID_PARAMETERS = st.fixed_dictionaries(
    {"fromAccount": st.just("CHK-00012345"), "toAccount": st.just("SAV-00067890"), "amount": AMOUNTS}
)


@st.composite
def parameters(draw: st.DrawFn) -> dict[str, Any]:
    chosen = draw(st.sets(st.sampled_from(sorted(VALUES)), max_size=3))
    base = draw(VALID_PARAMETERS) if draw(st.sampled_from([True, True, True, False])) else {}
    return {**base, **{name: draw(VALUES[name]) for name in chosen}}


@st.composite
def events(draw: st.DrawFn) -> Any:
    # Modes are drawn from weighted lists (hypothesis favours boundary values of plain integers): most events
    # are well-formed ContactFlowEvents with questionable parameters; some are broken at every level.
    event = load_event("starter.json")
    contact = event["Details"]["ContactData"]
    contact["ContactId"] = draw(
        st.sampled_from(["uuid"] * 6 + ["id", "garbage"]).flatmap(
            lambda kind: {
                "uuid": st.uuids().map(str),
                "id": st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True),
                "garbage": GARBAGE,
            }[kind]
        )
    )
    event["Details"]["Parameters"] = draw(
        st.sampled_from([True] * 6 + [False]).flatmap(lambda good: parameters() if good else GARBAGE)
    )
    shape = draw(st.sampled_from(["event"] * 12 + ["contact", "details", "raw"]))
    if shape == "contact":
        event["Details"]["ContactData"] = draw(GARBAGE)
    elif shape == "details":
        event["Details"] = draw(GARBAGE)
    elif shape == "raw":
        return draw(GARBAGE)
    return event


def _assert_flat(answer: Any) -> None:
    assert isinstance(answer, dict)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in answer.items()), answer
    assert len(json.dumps(answer).encode()) < MAX_ANSWER_BYTES


QUICK = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@QUICK
@given(event=events())
def test_any_event_starts_exactly_one_valid_transfer_or_is_rejected_with_a_typed_code(event: Any) -> None:
    fake = FakeAws()
    context = FakeLambdaContext()
    with mock.patch.object(aws, "client", fake):
        answer = starter.handler(event, context)
        _assert_flat(answer)
        if answer["status"] == "REJECTED":
            assert answer["errorCode"] in REJECTION_CODES and answer["retryable"] == "false"
            assert fake.rows == {} and fake.executions == {}
            return
        assert answer["status"] == "STARTED", answer
        tracker_id = answer["trackerId"]
        assert list(fake.rows) == [tracker_id] and list(fake.executions) == [tracker_id]
        assert _valid_execution_name(tracker_id)
        assert json.loads(fake.executions[tracker_id]) == {"operation": "transfer", "trackerId": tracker_id}
        request = {k: v["S"] for k, v in fake.rows[tracker_id]["request"]["M"].items()}
        # What was stored is itself a valid request: exact Decimal money within the limit, two real accounts.
        again = parse_request(TransferRequest, request, get_settings())
        assert again.amount == Decimal(request["amount"]) > 0 and again.amount <= get_settings().max_transfer_amount
        assert again.from_account != again.to_account
        # A retry of the same event is the same answer and still one transfer.
        assert starter.handler(event, context) == answer
        assert len(fake.rows) == 1 and len(fake.executions) == 1


@QUICK
@given(event=events(), tracker_id=st.one_of(st.just("transfer-0123456789abcdef"), GARBAGE))
def test_status_and_results_always_answer_a_flat_map(event: Any, tracker_id: Any) -> None:
    fake = FakeAws()
    fake.rows["transfer-0123456789abcdef"] = {
        "trackerId": {"S": "transfer-0123456789abcdef"},
        "operation": {"S": "transfer"},
        "status": {"S": "SUCCEEDED"},
        "step": {"S": "DONE"},
        "stepsDone": {"N": "3"},
        "stepsTotal": {"N": "3"},
        "createdAt": {"N": "1700000000"},
        "expiresAt": {"N": "99999999999"},
        "request": {"M": {"amount": {"S": "1.00"}, "currency": {"S": "USD"}}},
        "confirmationNumber": {"S": "HL0000000001"},
    }
    if isinstance(event, dict) and isinstance(event.get("Details"), dict):
        event["Details"]["Parameters"] = {"trackerId": tracker_id}
    with mock.patch.object(aws, "client", fake):
        for handler in (status.handler, results.handler, outcome_waiter.handler):
            answer = handler(event, FakeLambdaContext())
            _assert_flat(answer)
            assert answer["status"] in {"SUCCEEDED", "NOT_FOUND", "REJECTED"}, answer
            if answer["status"] == "REJECTED":
                assert answer["errorCode"] in {"INVALID_EVENT", "INVALID_PARAMETER"}
