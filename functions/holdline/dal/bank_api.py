"""The bank's HTTP API (the sandbox bank locally, a real provider in production).

Every payment carries an idempotency key of its own (``{trackerId}:debit`` and so on), so a retried or
redriven leg never moves money twice. HTTP failures become the typed errors the state machine matches.
Standard library only: the Lambda package stays small.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from decimal import Decimal
from typing import Any

from holdline.config import get_settings
from holdline.errors import (
    AccountFrozen,
    AccountNotFound,
    BankError,
    BankRejected,
    BankThrottled,
    BankTimeout,
    BankUnavailable,
    InsufficientFunds,
)

_BY_STATUS: dict[int, type[BankError]] = {
    400: BankRejected,
    402: InsufficientFunds,
    404: AccountNotFound,
    409: BankRejected,
    423: AccountFrozen,
    429: BankThrottled,
}


def _request(method: str, path: str, body: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> Any:
    settings = get_settings()
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(  # noqa: S310 - the URL is our own configuration, http(s) only
        settings.bank_api_url.rstrip("/") + path,
        data=data,
        method=method,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=settings.bank_timeout_seconds) as response:  # noqa: S310
            return json.loads(response.read(), parse_float=Decimal)
    except urllib.error.HTTPError as exc:
        error_type = _BY_STATUS.get(exc.code, BankUnavailable if exc.code >= 500 else BankRejected)
        code = _error_code(exc)
        raise error_type(f"bank answered {exc.code} {code}") from None
    except TimeoutError as exc:
        raise BankTimeout("the bank did not answer in time") from exc
    except (urllib.error.URLError, ConnectionError) as exc:
        raise BankUnavailable(f"could not reach the bank: {type(exc).__name__}") from exc


def _error_code(exc: urllib.error.HTTPError) -> str:
    try:
        return str(json.loads(exc.read())["error"]["code"])
    except Exception:
        return "UNKNOWN"


def pay(kind: str, account: str, amount: Decimal, currency: str, reference: str) -> dict[str, Any]:
    """Post a debit, credit or refund; the same key replays the bank's first answer."""
    body = {
        "type": kind,
        "account": account,
        "amount": str(amount),
        "currency": currency,
        "reference": reference,
    }
    answer: dict[str, Any] = _request("POST", "/v1/payments", body, {"Idempotency-Key": f"{reference}:{kind}"})
    return answer


def find_payment(reference: str, kind: str) -> dict[str, Any] | None:
    """Look a leg up by its idempotency key (provider key windows can be shorter than a 14-day redrive)."""
    query = urllib.parse.urlencode({"idempotencyKey": f"{reference}:{kind}"})
    try:
        answer: dict[str, Any] = _request("GET", f"/v1/payments?{query}")
    except AccountNotFound:  # 404: no payment under that key
        return None
    return answer
