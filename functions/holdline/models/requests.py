"""Request models: what a flow may ask for, validated before anything is written or started.

A refusal is a :class:`RequestRejected` with a code the flow can branch on and a short, speakable message
that never repeats an account number.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from holdline.config import CURRENCY_MINOR_DIGITS, Settings
from holdline.errors import RequestRejected

if TYPE_CHECKING:
    from pydantic import BaseModel

# Digits, an optional point and more digits, ASCII only: no sign, exponent, separators or Unicode digits.
_AMOUNT = re.compile(r"[0-9]{1,15}(\.[0-9]{1,15})?", re.ASCII)
_ACCOUNT = re.compile(r"[A-Za-z0-9-]{4,34}", re.ASCII)
_REQUEST_ID = re.compile(r"[A-Za-z0-9_-]{1,64}", re.ASCII)

# What each pydantic error type means to a flow (the follow-up model). Its own checks raise
# PydanticCustomError with the code as type.
_PYDANTIC_CODES = {"missing": "MISSING_PARAMETER"}
_MISSING = object()


def _parameter(parameters: Mapping[str, Any], alias: str, name: str) -> Any:
    """A flow parameter by its flow name (``fromAccount``), else by its field name (``from_account``)."""
    if alias in parameters:
        return parameters[alias]
    return parameters.get(name, _MISSING)


def _account(value: Any) -> str:
    if value is _MISSING:
        raise RequestRejected("MISSING_PARAMETER", "A required detail is missing.")
    if not isinstance(value, str) or not value:
        code = "MISSING_PARAMETER" if value in (None, "") else "INVALID_PARAMETER"
        raise RequestRejected(code, "A required detail is missing." if code == "MISSING_PARAMETER" else _NOT_VALID)
    if not _ACCOUNT.fullmatch(value):
        raise RequestRejected("INVALID_ACCOUNT", "That account number is not valid.")
    return value


def _amount(value: Any) -> Decimal:
    if value is _MISSING or value is None or value == "":
        raise RequestRejected("MISSING_PARAMETER", "A required detail is missing.")
    if not isinstance(value, str) or not _AMOUNT.fullmatch(value):
        raise RequestRejected("INVALID_AMOUNT", "That amount is not valid.")
    try:
        amount = Decimal(value)
    except InvalidOperation as exc:  # pragma: no cover - the pattern already guarantees a number
        raise RequestRejected("INVALID_AMOUNT", "That amount is not valid.") from exc
    if amount <= 0:
        raise RequestRejected("INVALID_AMOUNT", "The amount must be more than zero.")
    return amount


def _currency(value: Any, settings: Settings) -> str:
    if value is _MISSING or value is None or value == "":
        return settings.default_currency
    if not isinstance(value, str) or value not in settings.allowed_currencies:
        raise RequestRejected("UNSUPPORTED_CURRENCY", "That currency is not supported.")
    return value


_NOT_VALID = "A detail of that request is not valid."


@dataclass(frozen=True)
class TransferRequest:
    """Parameters of a money transfer, as the flow sends them (all strings).

    Plain code, not a pydantic model: it is the starter's every-call path and the checks were all our own
    anyway; leaving pydantic out keeps the starter's cold import near a bare boto3 (BENCHMARKS.md).
    """

    from_account: str
    to_account: str
    amount: Decimal
    currency: str

    @classmethod
    def from_parameters(cls, parameters: Mapping[str, Any], settings: Settings) -> TransferRequest:
        """Validate flow parameters in field order; raise :class:`RequestRejected` with the first problem."""
        from_account = _account(_parameter(parameters, "fromAccount", "from_account"))
        to_account = _account(_parameter(parameters, "toAccount", "to_account"))
        amount = _amount(_parameter(parameters, "amount", "amount"))
        currency = _currency(_parameter(parameters, "currency", "currency"), settings)
        if from_account == to_account:
            raise RequestRejected("SAME_ACCOUNT", "The two accounts must be different.")
        minor_digits = CURRENCY_MINOR_DIGITS[currency]
        exponent = amount.as_tuple().exponent
        assert isinstance(exponent, int)  # finite by the pattern above
        if -exponent > minor_digits:
            raise RequestRejected("INVALID_AMOUNT", "That amount has too many decimal places.")
        if amount > settings.max_transfer_amount:
            raise RequestRejected("LIMIT_EXCEEDED", "That amount is over the transfer limit.")
        # Normalize to the currency's minor units so "250" and "250.00" are the same request.
        return cls(from_account, to_account, amount.quantize(Decimal(1).scaleb(-minor_digits)), currency)

    def fingerprint(self) -> str:
        """A stable hash of what the request asks for: the same key with another payload is a conflict."""
        return transfer_fingerprint(self.to_item())

    def to_item(self) -> dict[str, str]:
        """What the tracker row keeps for the bank legs (the claim check): strings, never floats."""
        return {
            "fromAccount": self.from_account,
            "toAccount": self.to_account,
            "amount": str(self.amount),
            "currency": self.currency,
        }


def transfer_fingerprint(item: Mapping[str, Any]) -> str:
    """The fingerprint of a transfer as the tracker row keeps it (``TransferRequest.to_item``): the starter writes it
    beside the request, and each leg recomputes it from the request it reads, so a row edited after the start moves
    no money."""
    canonical = json.dumps(
        {
            "from": item.get("fromAccount"),
            "to": item.get("toAccount"),
            "amount": str(item.get("amount")),
            "currency": item.get("currency"),
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def parse_request(model: type[Any], parameters: dict[str, Any], settings: Settings) -> Any:
    """Validate flow parameters; raise :class:`RequestRejected` with the first problem found.

    A plain model validates itself (``from_parameters``); a pydantic one (the follow-up request, on its own
    operation's path only) is validated here, with pydantic imported on that path alone."""
    if hasattr(model, "from_parameters"):
        return model.from_parameters(parameters, settings)
    return _parse_pydantic(model, parameters, settings)


def _parse_pydantic(model: type[BaseModel], parameters: dict[str, Any], settings: Settings) -> Any:
    from pydantic import ValidationError

    try:
        return model.model_validate(parameters, context={"settings": settings})
    except ValidationError as exc:
        first = exc.errors()[0]
        code = _PYDANTIC_CODES.get(first["type"], first["type"])
        if code == "MISSING_PARAMETER":
            raise RequestRejected(code, "A required detail is missing.") from None
        if not code.isupper():  # a pydantic type error, not one of our own codes
            raise RequestRejected("INVALID_PARAMETER", _NOT_VALID) from None
        raise RequestRejected(code, first["msg"]) from None


def valid_request_id(value: object) -> bool:
    return isinstance(value, str) and bool(_REQUEST_ID.fullmatch(value))
