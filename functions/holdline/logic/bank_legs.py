"""The saga's legs. Each reads what it needs from the tracker row (the execution input carries only the
tracker id, so account numbers never appear in Step Functions' input or history) and calls the bank with
a key of its own. Errors are raised, typed, for the state machine's Retry and Catch."""

from __future__ import annotations

import hashlib
from decimal import Decimal
from typing import Any

from holdline.dal import bank_api, tracker_table
from holdline.errors import BankUnavailable, TrackerNotFound
from holdline.observability import logger, mask


def _load(tracker_id: str) -> dict[str, Any]:
    row = tracker_table.get(tracker_id)
    if row is None:
        raise TrackerNotFound(f"no tracker row {tracker_id}")
    request: dict[str, Any] = row["request"]
    return request


def debit(tracker_id: str) -> dict[str, Any]:
    request = _load(tracker_id)
    payment = bank_api.pay("debit", request["fromAccount"], Decimal(request["amount"]), request["currency"], tracker_id)
    logger.info("debited", extra={"account": mask(request["fromAccount"]), "paymentId": payment["paymentId"]})
    return {"paymentId": payment["paymentId"]}


def credit(tracker_id: str) -> dict[str, Any]:
    request = _load(tracker_id)
    payment = bank_api.pay("credit", request["toAccount"], Decimal(request["amount"]), request["currency"], tracker_id)
    logger.info("credited", extra={"account": mask(request["toAccount"]), "paymentId": payment["paymentId"]})
    return {"paymentId": payment["paymentId"]}


def confirm(tracker_id: str) -> dict[str, Any]:
    """Both legs must be settled at the bank; the confirmation number is derived from them, so a retry
    issues the same number."""
    legs = [bank_api.find_payment(tracker_id, kind) for kind in ("debit", "credit")]
    if any(leg is None or leg.get("status") != "SETTLED" for leg in legs):
        raise BankUnavailable("a leg is not settled yet")
    digest = hashlib.sha256("|".join(str(leg["paymentId"]) for leg in legs if leg).encode()).hexdigest()
    return {"confirmationNumber": "HL" + str(int(digest[:12], 16) % 10**10).zfill(10)}


def refund(tracker_id: str) -> dict[str, Any]:
    """Give the debit back, if there was one: a debit that timed out may or may not have landed."""
    request = _load(tracker_id)
    debit_payment = bank_api.find_payment(tracker_id, "debit")
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
