"""The bank's HTTP API (the sandbox bank locally, a real provider in production).

Every payment carries an idempotency key of its own (``{trackerId}:debit`` and so on), so a retried or
redriven leg never moves money twice. HTTP failures become the typed errors the state machine matches.
Standard library only: the Lambda package stays small.

**A leg's budget.** Lambda stops a function at its Timeout, and the task then fails with ``Sandbox.Timedout``
(``Lambda.Unknown`` on older runtimes; Step Functions guide, "Handle Lambda service exceptions"): the leg's
last call may still land, and nothing was logged. So the handler sets a :func:`budget` (the context's
remaining time less a reserve) and every call here fits in it: a call starts only with at least
``MIN_CALL_SECONDS`` left (else ``LegOutOfTime``), and waits at most the configured timeout or what is left,
whichever is first (then ``BankTimeout``). Both are typed and retried: every leg is idempotent.

**Retry-After.** A 429 moved nothing. When its Retry-After (and one more call) fits in the budget the call
waits it out, a little longer at random so throttled legs do not come back in step, and posts again; else it
raises ``BankThrottled`` at once, and the state machine waits at least the bank's Retry-After ceiling
(``RETRY_AFTER_CEILING_SECONDS``, with no jitter below it) before the next attempt.
"""

from __future__ import annotations

import http.client
import json
import random
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar, copy_context
from decimal import Decimal
from typing import Any, TypeVar

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
    LegOutOfTime,
    PaymentInFlight,
)

#: Below this much budget a call is not started: it could not get an answer back in time.
MIN_CALL_SECONDS = 0.1
#: The longest Retry-After the bank sends (its API contract; docs/sandbox-bank.md). The state machine's
#: BankThrottled retry waits at least this long (tests/unit/test_state_machines.py ties the two).
RETRY_AFTER_CEILING_SECONDS = 5
#: A 429 without a usable Retry-After is waited out this long.
DEFAULT_RETRY_AFTER_SECONDS = 1.0
#: A wait for Retry-After is stretched by up to this fraction at random: never shorter than asked.
RETRY_AFTER_JITTER = 0.2
#: 409 codes meaning "an earlier request with this key is still being processed" (Stripe: idempotency_key_in_use).
IN_FLIGHT_CODES = frozenset({"IDEMPOTENCY_KEY_IN_USE"})

# Seams for tests; read at call time.
clock: Callable[[], float] = time.monotonic
sleep: Callable[[float], None] = time.sleep

_deadline: ContextVar[float | None] = ContextVar("holdline_bank_deadline", default=None)


@contextmanager
def budget(seconds: float) -> Iterator[None]:
    """Bank calls inside this block end within ``seconds`` from now (see the module docstring)."""
    token = _deadline.set(clock() + max(0.0, seconds))
    try:
        yield
    finally:
        _deadline.reset(token)


T = TypeVar("T")


def each_key(call: Callable[[str, str], T], reference: str, kinds: Sequence[str]) -> list[T]:
    """``call(reference, kind)`` for every leg's key at once, answers in the order of ``kinds``. Each thread runs in a
    copy of this context, so the budget (a ContextVar) bounds its calls as it bounds the caller's."""
    with ThreadPoolExecutor(max_workers=len(kinds), thread_name_prefix="bank") as pool:
        calls = [pool.submit(copy_context().run, call, reference, kind) for kind in kinds]
        return [answer.result() for answer in calls]


def remaining_seconds() -> float | None:
    """What is left of the budget, or None outside one."""
    deadline = _deadline.get()
    return None if deadline is None else deadline - clock()


def _call_timeout(configured: float) -> float:
    remaining = remaining_seconds()
    if remaining is None:
        return configured
    if remaining < MIN_CALL_SECONDS:
        raise LegOutOfTime(f"{max(0.0, remaining):.2f} s of the leg's budget left: too little for a bank call")
    return min(configured, remaining)


_BY_STATUS: dict[int, type[BankError]] = {
    400: BankRejected,
    402: InsufficientFunds,
    404: AccountNotFound,
    409: BankRejected,
    423: AccountFrozen,
    429: BankThrottled,
}


def _request(
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    *,
    accept: frozenset[int] = frozenset(),
) -> Any:
    """One call to the bank, and its 429s waited out while the budget allows (module docstring)."""
    while True:
        try:
            return _attempt(method, path, body, headers, accept)
        except BankThrottled as throttled:
            wait = throttled.retry_after if throttled.retry_after is not None else DEFAULT_RETRY_AFTER_SECONDS
            remaining = remaining_seconds()
            if remaining is None or wait + MIN_CALL_SECONDS > remaining:
                raise
            sleep(min(wait * (1 + random.uniform(0, RETRY_AFTER_JITTER)), remaining - MIN_CALL_SECONDS))


def _attempt(
    method: str,
    path: str,
    body: dict[str, Any] | None,
    headers: dict[str, str] | None,
    accept: frozenset[int],
) -> Any:
    """One HTTP request. A status in ``accept`` is answered (its JSON body) instead of raised."""
    settings = get_settings()
    timeout = _call_timeout(settings.bank_timeout_seconds)
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(  # noqa: S310 - the URL is our own configuration, http(s) only
        settings.bank_api_url.rstrip("/") + path,
        data=data,
        method=method,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return json.loads(response.read(), parse_float=Decimal)
    except urllib.error.HTTPError as exc:
        payload = _error_body(exc)
        if exc.code in accept:
            return payload
        code = str(payload.get("error", {}).get("code", "UNKNOWN")) if isinstance(payload, dict) else "UNKNOWN"
        if exc.code == 429:
            raise BankThrottled(f"bank answered 429 {code}", _retry_after(exc)) from None
        if exc.code == 409 and code in IN_FLIGHT_CODES:
            raise PaymentInFlight(f"bank answered 409 {code}") from None
        error_type = _BY_STATUS.get(exc.code, BankUnavailable if exc.code >= 500 else BankRejected)
        raise error_type(f"bank answered {exc.code} {code}") from None
    except TimeoutError as exc:
        raise BankTimeout("the bank did not answer in time") from exc
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            raise BankTimeout("the bank did not answer in time") from exc
        raise BankUnavailable(f"could not reach the bank: {type(exc.reason).__name__}") from exc
    except (ConnectionError, http.client.HTTPException) as exc:
        # A reset or a half-closed connection: the request may or may not have been handled, and a retry with
        # the same key finds out.
        raise BankUnavailable(f"could not reach the bank: {type(exc).__name__}") from exc


def _retry_after(exc: urllib.error.HTTPError) -> float | None:
    try:
        return max(0.0, float(exc.headers.get("Retry-After", "")))
    except ValueError:
        return None


def _error_body(exc: urllib.error.HTTPError) -> Any:
    try:
        return json.loads(exc.read(), parse_float=Decimal)
    except Exception:
        return {}


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
    answer: dict[str, Any] = _request("GET", f"/v1/payments?{query}", accept=frozenset({404}))
    return None if "error" in answer else answer


def cancel(reference: str, kind: str) -> dict[str, Any] | None:
    """Burn the key of a leg that has not landed, so a call still in flight (a task timeout does not stop its
    Lambda) cannot move money afterwards. Returns None once the key is burnt, or the payment that already
    landed under it (the caller must then undo or account for it)."""
    answer: dict[str, Any] = _request(
        "POST", "/v1/cancellations", {"idempotencyKey": f"{reference}:{kind}"}, accept=frozenset({409})
    )
    if "error" not in answer:
        return None
    payment = answer.get("payment")
    if not isinstance(payment, dict):
        raise BankRejected(f"bank refused the cancellation: {answer['error'].get('code', 'UNKNOWN')}")
    return payment


def get_account(account: str) -> dict[str, Any]:
    """The account's state: ``frozen``, ``dailyLimit`` and ``debitedToday`` (404 raises AccountNotFound)."""
    answer: dict[str, Any] = _request("GET", "/v1/accounts/" + urllib.parse.quote(account, safe=""))
    return answer


def screen(reference: str, account: str, counterparty: str, amount: Decimal, currency: str) -> dict[str, Any]:
    """The bank's fraud screening of a transfer: ``decision`` APPROVE or DECLINE (with a ``reason``)."""
    body = {
        "reference": reference,
        "account": account,
        "counterparty": counterparty,
        "amount": str(amount),
        "currency": currency,
    }
    answer: dict[str, Any] = _request("POST", "/v1/screenings", body)
    return answer
