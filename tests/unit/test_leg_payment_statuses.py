"""A leg reads a payment's status against an allow-list (issue 19, item 7): a payment with no status, or one the
saga does not know, is never taken as settled, and a refund gives back only a debit that holds the money
(SETTLED or PENDING). The bank client is replaced here by what the bank answered; the legs' own logic runs."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from holdline.dal import bank_api, tracker_table
from holdline.errors import RequestTampered, UnknownPaymentStatus
from holdline.logic import bank_legs
from holdline.models.requests import transfer_fingerprint

REQUEST = {"fromAccount": "CHK-00012345", "toAccount": "SAV-00067890", "amount": "10.00", "currency": "USD"}


def _serve_row(monkeypatch: pytest.MonkeyPatch, request: dict[str, Any], fingerprint: str) -> None:
    row = {"status": "RUNNING", "request": dict(request), "requestFingerprint": fingerprint}
    monkeypatch.setattr(tracker_table, "get", lambda tracker_id: row)


@pytest.fixture
def row(monkeypatch: pytest.MonkeyPatch) -> None:
    _serve_row(monkeypatch, REQUEST, transfer_fingerprint(REQUEST))


def _bank(monkeypatch: pytest.MonkeyPatch, **answers: Any) -> list[str]:
    paid: list[str] = []

    def pay(kind: str, *args: Any) -> dict[str, Any]:
        paid.append(kind)
        return answers.get(kind) or {"paymentId": f"p-{kind}", "status": "SETTLED"}

    monkeypatch.setattr(bank_api, "pay", pay)
    monkeypatch.setattr(bank_api, "cancel", lambda reference, kind: answers.get(f"cancel-{kind}"))
    return paid


@pytest.mark.parametrize("status", [None, "", "settled", "ON_HOLD", "FAILED"])
def test_a_payment_without_a_known_status_is_not_settled(
    monkeypatch: pytest.MonkeyPatch, row: None, status: str | None
) -> None:
    payment: dict[str, Any] = {"paymentId": "p-1"}
    if status is not None:
        payment["status"] = status
    _bank(monkeypatch, debit=payment)
    with pytest.raises(UnknownPaymentStatus):
        bank_legs.debit("tr-1")


@pytest.mark.parametrize("status", ["SETTLED", "PENDING"])
def test_a_settled_or_pending_payment_is_answered(monkeypatch: pytest.MonkeyPatch, row: None, status: str) -> None:
    _bank(monkeypatch, credit={"paymentId": "p-2", "status": status})
    assert bank_legs.credit("tr-1") == {"paymentId": "p-2", "status": status}


@pytest.mark.parametrize("status", ["SETTLED", "PENDING"])
def test_a_refund_gives_back_a_debit_that_holds_the_money(
    monkeypatch: pytest.MonkeyPatch, row: None, status: str
) -> None:
    paid = _bank(monkeypatch, **{"cancel-debit": {"paymentId": "p-d", "status": status, "amount": "10.00"}})
    assert bank_legs.refund("tr-1")["refunded"] is True
    assert paid == ["refund"]


@pytest.mark.parametrize("status", ["CANCELLED", "FAILED", "REVERSED"])
def test_a_refund_of_a_debit_that_moved_nothing_pays_nothing(
    monkeypatch: pytest.MonkeyPatch, row: None, status: str
) -> None:
    paid = _bank(monkeypatch, **{"cancel-debit": {"paymentId": "p-d", "status": status, "amount": "10.00"}})
    assert bank_legs.refund("tr-1") == {"refunded": False}
    assert paid == []


@pytest.mark.parametrize("status", [None, "ON_HOLD"])
def test_a_refund_of_a_debit_in_an_unknown_state_pays_nothing_and_says_so(
    monkeypatch: pytest.MonkeyPatch, row: None, status: str | None
) -> None:
    debit: dict[str, Any] = {"paymentId": "p-d", "amount": "10.00"}
    if status is not None:
        debit["status"] = status
    paid = _bank(monkeypatch, **{"cancel-debit": debit})
    with pytest.raises(UnknownPaymentStatus):
        bank_legs.refund("tr-1")
    assert paid == []


@pytest.mark.parametrize("field", ["fromAccount", "toAccount", "amount"])
@pytest.mark.parametrize("leg", ["debit", "credit", "refund", "screen_fraud"])
def test_a_leg_refuses_a_row_changed_after_the_start(monkeypatch: pytest.MonkeyPatch, field: str, leg: str) -> None:
    """The starter fingerprints the request it validated; a row edited afterwards (another account, a larger
    amount) moves no money: the leg raises before any bank call."""
    changed = {**REQUEST, field: "999.00" if field == "amount" else "CHK-00099999"}
    _serve_row(monkeypatch, changed, transfer_fingerprint(REQUEST))
    paid = _bank(monkeypatch)
    monkeypatch.setattr(bank_api, "screen", lambda *args: paid.append("screen") or {"decision": "APPROVE"})
    with pytest.raises(RequestTampered):
        getattr(bank_legs, leg)("tr-1")
    assert paid == []


def test_the_starters_fingerprint_is_the_legs_fingerprint() -> None:
    from holdline.models.requests import TransferRequest

    request = TransferRequest("CHK-00012345", "SAV-00067890", Decimal("10.00"), "USD")
    assert request.fingerprint() == transfer_fingerprint(request.to_item())
