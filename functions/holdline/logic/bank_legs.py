"""The saga's legs. Each reads what it needs from the tracker row (the execution input carries only the
tracker id, so account numbers never appear in Step Functions' input or history) and calls the bank with
a key of its own. Errors are raised, typed, for the state machine's Retry and Catch.

What a leg returns lands in the execution history: ids and statuses only, never an account number.

Every leg runs inside :func:`leg_budget`: its bank calls and its tracker read end before the function's own
Timeout (with a reserve to answer), so a slow bank makes a leg raise a typed, retried error (``BankTimeout``,
``LegOutOfTime``) instead of being stopped by Lambda with its last call unaccounted for.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal, InvalidOperation
from typing import Any

from holdline.dal import aws, bank_api, tracker_table
from holdline.errors import (
    AccountFrozen,
    AccountNotFound,
    BankError,
    BankRejected,
    CompensationBlocked,
    DailyLimitExceeded,
    FraudSuspected,
    InsufficientFunds,
    LedgerUnsettled,
    PaymentNotFound,
    RefusedAfterAttempt,
    RequestTampered,
    TrackerNotFound,
    TrackerUnavailable,
    TransferInvalid,
    UnknownPaymentStatus,
)
from holdline.models.ledger import LedgerVerdict, verdict_of
from holdline.models.requests import transfer_fingerprint
from holdline.models.tracker import TrackerStatus
from holdline.observability import logger, mask

SETTLED = "SETTLED"
#: The keys a transfer's payments are made under ({trackerId}:debit, :credit, :refund).
LEDGER_KEYS = ("debit", "credit", "refund")
PENDING = "PENDING"
#: The statuses a leg's payment may have once the bank took it: both hold the money (a PENDING debit is
#: already off the source's available balance). Anything else, a missing status included, is not "settled".
PAYMENT_STATUSES = frozenset({SETTLED, PENDING})
#: The statuses of a payment that moved no money and never will: nothing to give back.
NO_MONEY_STATUSES = frozenset({"CANCELLED", "FAILED", "REJECTED", "REVERSED"})
_CURRENCY = re.compile(r"[A-Z]{3}")
#: What a leg keeps of its Lambda's remaining time to raise its error and hand it to the runtime.
LEG_RESERVE_SECONDS = 0.4
# The refusals that mean "nothing moved" on a first attempt (the state machine ends the transfer on them).
_REFUSALS = (InsufficientFunds, AccountNotFound, AccountFrozen, BankRejected)


@contextmanager
def leg_budget(remaining_ms: int) -> Iterator[None]:
    """The leg's bank calls and AWS calls end ``LEG_RESERVE_SECONDS`` before the function's Timeout
    (``context.get_remaining_time_in_millis()``), as the Connect edge does with its own budget."""
    seconds = max(0.0, remaining_ms / 1000 - LEG_RESERVE_SECONDS)
    with bank_api.budget(seconds), aws.budget(seconds):
        yield


def _row(tracker_id: str) -> dict[str, Any]:
    with aws.transient_as(TrackerUnavailable):
        row = tracker_table.get(tracker_id)
    if row is None:
        raise TrackerNotFound(f"no tracker row {tracker_id}")
    return row


def _checked(row: dict[str, Any]) -> dict[str, Any]:
    """The row's request, if it still is the one the starter fingerprinted."""
    request: dict[str, Any] = row["request"]
    if transfer_fingerprint(request) != row.get("requestFingerprint"):
        raise RequestTampered("the tracker row's request does not match its fingerprint")
    return request


def _load(tracker_id: str) -> dict[str, Any]:
    return _checked(_row(tracker_id))


def _amount(request: dict[str, Any]) -> Decimal:
    return Decimal(str(request["amount"]))


def _leg_answer(payment: dict[str, Any]) -> dict[str, Any]:
    status = payment.get("status")
    if status not in PAYMENT_STATUSES:
        # An allow-list: a payment with no status (or a new one) is not settled, whatever the bank meant.
        raise UnknownPaymentStatus(f"payment {payment.get('paymentId')} has status {status!r}")
    return {"paymentId": str(payment["paymentId"]), "status": str(status)}


# ---- validate and pre-checks: nothing has moved yet, so any failure ends the transfer without a refund ----


def validate(tracker_id: str) -> dict[str, Any]:
    """The tracker row is a transfer we can make: well-formed, still running, both accounts open."""
    row = _row(tracker_id)
    if row.get("status") != TrackerStatus.RUNNING:
        raise TransferInvalid(f"tracker is {row.get('status')}, not RUNNING")
    request = row.get("request")
    if not isinstance(request, dict):
        raise TransferInvalid("tracker row has no request")
    _checked(row)
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
        try:
            found = bank_api.find_payment(tracker_id, kind)
        except BankError as exc:
            if exc.transient:
                raise  # retried: the next attempt looks again
            # A refused look-up (a gateway's 408, a WAF's 403, a proxy's 400) says nothing about the attempt
            # before, which may have landed: as with a refusal on a retry, only compensation is safe.
            logger.warning(f"{kind} look-up refused on a retry", extra={"error": type(exc).__name__})
            raise RefusedAfterAttempt(f"{kind} look-up refused on retry {retry_count}: {type(exc).__name__}") from exc
        if found is not None:
            logger.info("leg already landed", extra={"paymentId": found["paymentId"], "retryCount": retry_count})
            return _leg_answer(found)
    account = request[account_field]
    try:
        payment = bank_api.pay(kind, account, _amount(request), request["currency"], tracker_id)
    except _REFUSALS as refusal:
        if retry_count == 0:
            raise  # a first attempt refused: nothing moved under this key
        # An earlier attempt's outcome was not known (it may still land): "nothing moved" would be a guess, so
        # the saga must compensate rather than end here.
        logger.warning(f"{kind} refused on a retry", extra={"error": type(refusal).__name__})
        raise RefusedAfterAttempt(f"{kind} refused on retry {retry_count}: {type(refusal).__name__}") from refusal
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


def confirm(debit_payment_id: str, credit_payment_id: str) -> dict[str, Any]:
    """Both legs have settled (the state machine only gets here after DebitSettled and CreditSettled saw
    SETTLED): the transfer has succeeded. The confirmation number is derived from the two payment ids the saga
    already holds, with no call to the bank, so a bank outage now cannot turn a completed transfer into a
    failure, and a retry issues the same number."""
    if not debit_payment_id or not credit_payment_id:
        raise TransferInvalid("confirm needs both payment ids")
    digest = hashlib.sha256(f"{debit_payment_id}|{credit_payment_id}".encode()).hexdigest()
    return {"confirmationNumber": "HL" + str(int(digest[:12], 16) % 10**10).zfill(10)}


def _settle_leg(tracker_id: str, kind: str) -> dict[str, Any] | None:
    """The payment under the leg's key, or None once its key is burnt (a request still in flight, its task
    long timed out, can then no longer land). One call: a cancellation of a key that a payment used answers
    with that payment."""
    return bank_api.cancel(tracker_id, kind)


def refund(tracker_id: str, retry_count: int = 0) -> dict[str, Any]:
    """Give the debit back, if there was one, exactly once.

    A debit or credit whose attempt gave up may still be in flight (a task timeout does not stop its Lambda).
    So both keys are cancelled at the bank, side by side (the refund's calls must fit in one attempt's budget):
    a payment that landed comes back from its cancellation, a key with none is burnt and a late call then
    moves nothing. If the credit landed, refunding would pay twice: that is for a person to reconcile
    (REFUND_PENDING). A retry looks its own refund up first: an earlier attempt's refund may have landed
    although its answer never came back.
    """
    request = _load(tracker_id)
    if retry_count > 0:
        try:
            landed = bank_api.find_payment(tracker_id, "refund")
        except BankError as exc:
            if not exc.transient:
                raise
            landed = None  # the post below replays the bank's first answer under the same key anyway
        if landed is not None:
            logger.info("refund already landed", extra={"paymentId": landed["paymentId"], "retryCount": retry_count})
            return {"refunded": True, "paymentId": landed["paymentId"]}
    debit_payment, credit_payment = bank_api.each_key(_settle_leg, tracker_id, ("debit", "credit"))
    if credit_payment is not None:
        logger.error("credit landed on a failed transfer", extra={"paymentId": credit_payment["paymentId"]})
        raise CompensationBlocked("the credit landed; refunding the debit would pay twice")
    if debit_payment is None or debit_payment.get("status") in NO_MONEY_STATUSES:
        logger.info("no debit to refund")
        return {"refunded": False}
    if debit_payment.get("status") not in PAYMENT_STATUSES:
        # Only a debit that holds the money (SETTLED or PENDING) is given back: refunding one in an unknown state
        # could pay the source twice.
        raise UnknownPaymentStatus(f"the debit has status {debit_payment.get('status')!r}; not refunded")
    payment = bank_api.pay(
        "refund",
        request["fromAccount"],
        Decimal(str(debit_payment["amount"])),
        request["currency"],
        tracker_id,
    )
    logger.info("refunded", extra={"account": mask(request["fromAccount"]), "paymentId": payment["paymentId"]})
    return {"refunded": True, "paymentId": payment["paymentId"]}


def ledger_check(tracker_id: str) -> dict[str, Any]:
    """After a refund that did not complete: what the bank holds under the transfer's three keys, and what that
    makes the transfer (:class:`holdline.models.ledger.LedgerVerdict`). Every key is cancelled (a payment that
    landed comes back from its cancellation; a key with none is burnt, so no request still in flight can land
    after this check): the facts it returns cannot change afterwards. A payment still PENDING raises
    :class:`LedgerUnsettled`, which the state machine retries at the settlement pace. Moves no money."""
    debit_payment, credit_payment, refund_payment = bank_api.each_key(_settle_leg, tracker_id, LEDGER_KEYS)
    facts = {
        "debit": _ledger_state(debit_payment),
        "credit": _ledger_state(credit_payment),
        "refund": _ledger_state(refund_payment),
    }
    if PENDING in facts.values():
        raise LedgerUnsettled(f"a payment is still pending at the bank: {facts}")
    verdict = verdict_of(facts["debit"], facts["credit"], facts["refund"])
    log = logger.warning if verdict is LedgerVerdict.INCONSISTENT else logger.info
    log("ledger checked", extra={**facts, "verdict": verdict.value})
    return {
        "verdict": verdict.value,
        "debit": facts["debit"],
        "credit": facts["credit"],
        "refund": facts["refund"],
        "debitPaymentId": str(debit_payment["paymentId"]) if debit_payment else "",
        "creditPaymentId": str(credit_payment["paymentId"]) if credit_payment else "",
    }


def _ledger_state(payment: dict[str, Any] | None) -> str:
    """NONE (the key holds no payment, and now never will), the payment's status, or UNKNOWN for a payment with no
    status or one not on either list (never read as settled)."""
    if payment is None:
        return "NONE"
    status = payment.get("status")
    if status in PAYMENT_STATUSES or status in NO_MONEY_STATUSES:
        return str(status)
    return "UNKNOWN"
