"""The saga's legs. Each reads what it needs from the tracker row (the execution input carries only the
tracker id, so account numbers never appear in Step Functions' input or history) and calls the bank with
a key of its own. Errors are raised, typed, for the state machine's Retry and Catch.

What a leg returns lands in the execution history: ids and statuses only, never an account number.
"""

from __future__ import annotations

import hashlib
import re
from decimal import Decimal, InvalidOperation
from typing import Any

from holdline.dal import bank_api, tracker_table
from holdline.errors import (
    AccountFrozen,
    BankUnavailable,
    CompensationBlocked,
    DailyLimitExceeded,
    FraudSuspected,
    PaymentNotFound,
    TrackerNotFound,
    TransferInvalid,
)
from holdline.models.tracker import TrackerStatus
from holdline.observability import logger, mask

SETTLED = "SETTLED"
_CURRENCY = re.compile(r"[A-Z]{3}")


def _row(tracker_id: str) -> dict[str, Any]:
    row = tracker_table.get(tracker_id)
    if row is None:
        raise TrackerNotFound(f"no tracker row {tracker_id}")
    return row


def _load(tracker_id: str) -> dict[str, Any]:
    request: dict[str, Any] = _row(tracker_id)["request"]
    return request


def _amount(request: dict[str, Any]) -> Decimal:
    return Decimal(str(request["amount"]))


def _leg_answer(payment: dict[str, Any]) -> dict[str, Any]:
    return {"paymentId": str(payment["paymentId"]), "status": str(payment.get("status", SETTLED))}


# ---- validate and pre-checks: nothing has moved yet, so any failure ends the transfer without a refund ----


def validate(tracker_id: str) -> dict[str, Any]:
    """The tracker row is a transfer we can make: well-formed, still running, both accounts open."""
    row = _row(tracker_id)
    if row.get("status") != TrackerStatus.RUNNING:
        raise TransferInvalid(f"tracker is {row.get('status')}, not RUNNING")
    request = row.get("request")
    if not isinstance(request, dict):
        raise TransferInvalid("tracker row has no request")
    source, destination = request.get("fromAccount"), request.get("toAccount")
    if not isinstance(source, str) or not isinstance(destination, str) or not source or not destination:
        raise TransferInvalid("accounts missing")
    if source == destination:
        raise TransferInvalid("source and destination are the same account")
    try:
        amount = _amount(request)
    except (KeyError, InvalidOperation) as exc:
        raise TransferInvalid("amount is not a decimal") from exc
    if not amount.is_finite() or amount <= 0:
        raise TransferInvalid("amount must be greater than 0")
    if not isinstance(request.get("currency"), str) or not _CURRENCY.fullmatch(request["currency"]):
        raise TransferInvalid("currency is not an ISO 4217 code")
    for account in (source, destination):
        if bank_api.get_account(account).get("frozen"):  # an unknown account raises AccountNotFound
            raise AccountFrozen(f"account {mask(account)} is frozen")
    return {"valid": True}


def screen_fraud(tracker_id: str) -> dict[str, Any]:
    request = _load(tracker_id)
    answer = bank_api.screen(
        tracker_id, request["fromAccount"], request["toAccount"], _amount(request), request["currency"]
    )
    if answer.get("decision") != "APPROVE":
        # The reason is for the fraud team's logs; the caller only hears that the bank declined.
        logger.warning("fraud screening declined", extra={"reason": answer.get("reason")})
        raise FraudSuspected(f"screening declined: {answer.get('reason', 'UNKNOWN')}")
    return {"decision": "APPROVE"}


def check_daily_limit(tracker_id: str) -> dict[str, Any]:
    """The source's debits of the last 24 h plus this one stay within its daily limit. A pre-check, not a
    lock: two concurrent transfers can both pass it (the bank's own limit is the last word)."""
    request = _load(tracker_id)
    account = bank_api.get_account(request["fromAccount"])
    limit, used = Decimal(str(account["dailyLimit"])), Decimal(str(account["debitedToday"]))
    if used + _amount(request) > limit:
        raise DailyLimitExceeded(f"{used} already debited today, limit {limit}")
    return {"withinLimit": True}


# ---- the money legs -----------------------------------------------------------------------------------------


def _pay(kind: str, account_field: str, tracker_id: str, retry_count: int) -> dict[str, Any]:
    request = _load(tracker_id)
    if retry_count > 0:
        # A late retry: the attempt before may have landed after its task timed out. Look it up by its key
        # first rather than trusting the bank's idempotency window to still cover it (a redrive can come
        # 14 days later).
        found = bank_api.find_payment(tracker_id, kind)
        if found is not None:
            logger.info("leg already landed", extra={"paymentId": found["paymentId"], "retryCount": retry_count})
            return _leg_answer(found)
    account = request[account_field]
    payment = bank_api.pay(kind, account, _amount(request), request["currency"], tracker_id)
    logger.info(kind, extra={"account": mask(account), "paymentId": payment["paymentId"]})
    return _leg_answer(payment)


def debit(tracker_id: str, retry_count: int = 0) -> dict[str, Any]:
    return _pay("debit", "fromAccount", tracker_id, retry_count)


def credit(tracker_id: str, retry_count: int = 0) -> dict[str, Any]:
    return _pay("credit", "toAccount", tracker_id, retry_count)


def settlement(tracker_id: str, leg: str, checks: int) -> dict[str, Any]:
    """One check of a submitted leg: the bank settles asynchronously (PENDING, then SETTLED). ``checks``
    counts the checks so far; the state machine bounds the loop with it."""
    if leg not in ("debit", "credit"):
        raise TransferInvalid(f"no such leg: {leg}")
    payment = bank_api.find_payment(tracker_id, leg)
    if payment is None:
        raise PaymentNotFound(f"the {leg} is not known to the bank under its key")
    return {**_leg_answer(payment), "checks": checks + 1}


def confirm(tracker_id: str) -> dict[str, Any]:
    """Both legs must be settled at the bank; the confirmation number is derived from them, so a retry
    issues the same number."""
    legs = [bank_api.find_payment(tracker_id, kind) for kind in ("debit", "credit")]
    if any(leg is None or leg.get("status") != SETTLED for leg in legs):
        raise BankUnavailable("a leg is not settled yet")
    digest = hashlib.sha256("|".join(str(leg["paymentId"]) for leg in legs if leg).encode()).hexdigest()
    return {"confirmationNumber": "HL" + str(int(digest[:12], 16) % 10**10).zfill(10)}


def refund(tracker_id: str) -> dict[str, Any]:
    """Give the debit back, if there was one, exactly once.

    A debit or credit whose task timed out may still be in flight (a task timeout does not stop its Lambda).
    So a leg that is not found is cancelled at the bank (its key burnt): a late call then moves nothing. If
    the credit landed, refunding would pay twice: that is for a person to reconcile (REFUND_PENDING).
    """
    request = _load(tracker_id)
    debit_payment = bank_api.find_payment(tracker_id, "debit") or bank_api.cancel(tracker_id, "debit")
    credit_payment = bank_api.find_payment(tracker_id, "credit") or bank_api.cancel(tracker_id, "credit")
    if credit_payment is not None:
        logger.error("credit landed on a failed transfer", extra={"paymentId": credit_payment["paymentId"]})
        raise CompensationBlocked("the credit landed; refunding the debit would pay twice")
    if debit_payment is None:
        logger.info("no debit to refund")
        return {"refunded": False}
    payment = bank_api.pay(
        "refund",
        request["fromAccount"],
        Decimal(str(debit_payment["amount"])),
        request["currency"],
        tracker_id,
    )
    logger.info("refunded", extra={"account": mask(request["fromAccount"]), "paymentId": payment["paymentId"]})
    return {"refunded": True, "paymentId": payment["paymentId"]}
