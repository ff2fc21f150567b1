"""Request models: what a flow may ask for, validated before anything is written or started.

A refusal is a :class:`RequestRejected` with a code the flow can branch on and a short, speakable message
that never repeats an account number.
"""

from __future__ import annotations

import hashlib
import json
import re
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from holdline.config import CURRENCY_MINOR_DIGITS, Settings
from holdline.errors import RequestRejected

# Digits, an optional point and more digits, ASCII only: no sign, exponent, separators or Unicode digits.
_AMOUNT = re.compile(r"[0-9]{1,15}(\.[0-9]{1,15})?", re.ASCII)
_ACCOUNT = re.compile(r"[A-Za-z0-9-]{4,34}", re.ASCII)
_REQUEST_ID = re.compile(r"[A-Za-z0-9_-]{1,64}", re.ASCII)

# What each pydantic error type means to a flow. Our own checks raise PydanticCustomError with the code as type.
_PYDANTIC_CODES = {"missing": "MISSING_PARAMETER"}


def _reject(code: str, message: str) -> PydanticCustomError:
    return PydanticCustomError(code, message)


class TransferRequest(BaseModel):
    """Parameters of a money transfer, as the flow sends them (all strings)."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    from_account: str = Field(alias="fromAccount")
    to_account: str = Field(alias="toAccount")
    amount: Decimal
    currency: str = Field(default="", validate_default=True)

    @field_validator("from_account", "to_account", mode="before")
    @classmethod
    def _account(cls, value: Any) -> str:
        if not isinstance(value, str) or not value:
            raise _reject("MISSING_PARAMETER" if value in (None, "") else "INVALID_PARAMETER", "An account is missing.")
        if not _ACCOUNT.fullmatch(value):
            raise _reject("INVALID_ACCOUNT", "That account number is not valid.")
        return value

    @field_validator("amount", mode="before")
    @classmethod
    def _amount(cls, value: Any) -> Decimal:
        if value is None or value == "":
            raise _reject("MISSING_PARAMETER", "The amount is missing.")
        if not isinstance(value, str) or not _AMOUNT.fullmatch(value):
            raise _reject("INVALID_AMOUNT", "That amount is not valid.")
        try:
            amount = Decimal(value)
        except InvalidOperation as exc:  # pragma: no cover - the pattern already guarantees a number
            raise _reject("INVALID_AMOUNT", "That amount is not valid.") from exc
        if amount <= 0:
            raise _reject("INVALID_AMOUNT", "The amount must be more than zero.")
        return amount

    @field_validator("currency", mode="before")
    @classmethod
    def _currency(cls, value: Any, info: ValidationInfo) -> str:
        settings: Settings = (info.context or {})["settings"]
        if value is None or value == "":
            return settings.default_currency
        if not isinstance(value, str) or value not in settings.allowed_currencies:
            raise _reject("UNSUPPORTED_CURRENCY", "That currency is not supported.")
        return value

    @model_validator(mode="after")
    def _rules(self, info: ValidationInfo) -> TransferRequest:
        settings: Settings = (info.context or {})["settings"]
        if self.from_account == self.to_account:
            raise _reject("SAME_ACCOUNT", "The two accounts must be different.")
        minor_digits = CURRENCY_MINOR_DIGITS[self.currency]
        exponent = self.amount.as_tuple().exponent
        assert isinstance(exponent, int)  # finite by the pattern above
        if -exponent > minor_digits:
            raise _reject("INVALID_AMOUNT", "That amount has too many decimal places.")
        if self.amount > settings.max_transfer_amount:
            raise _reject("LIMIT_EXCEEDED", "That amount is over the transfer limit.")
        # Normalize to the currency's minor units so "250" and "250.00" are the same request.
        object.__setattr__(self, "amount", self.amount.quantize(Decimal(1).scaleb(-minor_digits)))
        return self

    def fingerprint(self) -> str:
        """A stable hash of what the request asks for: the same key with another payload is a conflict."""
        canonical = json.dumps(
            {
                "from": self.from_account,
                "to": self.to_account,
                "amount": str(self.amount),
                "currency": self.currency,
            },
            sort_keys=True,
            separators=(",", ":"),
        )
        return hashlib.sha256(canonical.encode()).hexdigest()

    def to_item(self) -> dict[str, str]:
        """What the tracker row keeps for the bank legs (the claim check): strings, never floats."""
        return {
            "fromAccount": self.from_account,
            "toAccount": self.to_account,
            "amount": str(self.amount),
            "currency": self.currency,
        }


def parse_request(model: type[BaseModel], parameters: dict[str, Any], settings: Settings) -> Any:
    """Validate flow parameters; raise :class:`RequestRejected` with the first problem found."""
    try:
        return model.model_validate(parameters, context={"settings": settings})
    except ValidationError as exc:
        first = exc.errors()[0]
        code = _PYDANTIC_CODES.get(first["type"], first["type"])
        if code == "MISSING_PARAMETER":
            raise RequestRejected(code, "A required detail is missing.") from None
        if not code.isupper():  # a pydantic type error, not one of our own codes
            raise RequestRejected("INVALID_PARAMETER", "A detail of that request is not valid.") from None
        raise RequestRejected(code, first["msg"]) from None


def valid_request_id(value: object) -> bool:
    return isinstance(value, str) and bool(_REQUEST_ID.fullmatch(value))
