"""The transfer request model: every refusal has a typed code; accepted amounts are exact Decimals."""

from __future__ import annotations

from decimal import Decimal

import pytest

from holdline.config import Settings
from holdline.errors import RequestRejected
from holdline.models.requests import TransferRequest, parse_request

SETTINGS = Settings(max_transfer_amount=Decimal("5000"), allowed_currencies=("USD", "EUR", "JPY"))
GOOD = {"fromAccount": "CHK-00012345", "toAccount": "SAV-00067890", "amount": "250.00", "currency": "USD"}


def parse(**changes: object) -> TransferRequest:
    params = {**GOOD, **changes}
    params = {k: v for k, v in params.items() if v is not ...}
    result: TransferRequest = parse_request(TransferRequest, params, SETTINGS)
    return result


def rejected(**changes: object) -> str:
    with pytest.raises(RequestRejected) as info:
        parse(**changes)
    assert "12345" not in info.value.message and "67890" not in info.value.message
    return info.value.code


def test_accepts_a_good_request_as_decimal() -> None:
    request = parse()
    assert request.amount == Decimal("250.00") and isinstance(request.amount, Decimal)
    assert request.to_item() == {**GOOD}


def test_default_currency_and_normalized_amount() -> None:
    request = parse(currency=..., amount="7")
    assert request.currency == "USD"
    assert str(request.amount) == "7.00"
    assert parse(amount="7").fingerprint() == parse(amount="7.00").fingerprint()


def test_yen_has_no_minor_units() -> None:
    assert str(parse(currency="JPY", amount="1200").amount) == "1200"
    assert rejected(currency="JPY", amount="12.5") == "INVALID_AMOUNT"


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"fromAccount": ...}, "MISSING_PARAMETER"),
        ({"amount": ...}, "MISSING_PARAMETER"),
        ({"amount": ""}, "MISSING_PARAMETER"),
        ({"amount": "-5"}, "INVALID_AMOUNT"),
        ({"amount": "0"}, "INVALID_AMOUNT"),
        ({"amount": "0.00"}, "INVALID_AMOUNT"),
        ({"amount": "NaN"}, "INVALID_AMOUNT"),
        ({"amount": "1e3"}, "INVALID_AMOUNT"),
        ({"amount": "+5"}, "INVALID_AMOUNT"),
        ({"amount": "1,000.00"}, "INVALID_AMOUNT"),
        ({"amount": "١٢٣"}, "INVALID_AMOUNT"),
        ({"amount": "1.005"}, "INVALID_AMOUNT"),
        ({"amount": 5}, "INVALID_AMOUNT"),
        ({"amount": "5000.01"}, "LIMIT_EXCEEDED"),
        ({"currency": "XYZ"}, "UNSUPPORTED_CURRENCY"),
        ({"currency": "GBP"}, "UNSUPPORTED_CURRENCY"),
        ({"toAccount": "CHK-00012345"}, "SAME_ACCOUNT"),
        ({"toAccount": "abc"}, "INVALID_ACCOUNT"),
        ({"toAccount": "SAV 0006789"}, "INVALID_ACCOUNT"),
        ({"toAccount": "x" * 35}, "INVALID_ACCOUNT"),
        ({"fromAccount": ["CHK-00012345"]}, "INVALID_PARAMETER"),
    ],
)
def test_refusals_have_typed_codes(changes: dict[str, object], code: str) -> None:
    assert rejected(**changes) == code


def test_limit_is_inclusive() -> None:
    assert parse(amount="5000.00").amount == Decimal("5000.00")
