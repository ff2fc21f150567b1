"""The saga's legs (ValidateFunction, FraudCheckFunction, LimitCheckFunction, DebitFunction, CreditFunction,
SettlementFunction, ConfirmFunction, RefundFunction, LedgerCheckFunction), called by the state machine with
``{"trackerId": ..., "executionName": ..., "retryCount": ...}`` (plus ``leg`` and ``checks`` for a settlement
check, ``debitPaymentId`` and ``creditPaymentId`` for Confirm). They raise typed errors on purpose: Step Functions'
Retry and Catch match the class name. Each runs within a budget taken from the context's remaining time, so it
answers or raises before Lambda stops it at its Timeout."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from holdline.errors import TransferInvalid
from holdline.logic import bank_legs
from holdline.observability import logger, tracer

LegHandler = Callable[[dict[str, Any], LambdaContext], dict[str, Any]]
Step = Callable[[str, dict[str, Any]], dict[str, Any]]


def _count(event: dict[str, Any], name: str) -> int:
    value = event.get(name, 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise TransferInvalid(f"{name} must be a non-negative integer")
    return value


def _text(event: dict[str, Any], name: str) -> str:
    value = event.get(name)
    if not isinstance(value, str) or not value:
        raise TransferInvalid(f"{name} must be a non-empty string")
    return value


def _leg(name: str, step: Step) -> LegHandler:
    @logger.inject_lambda_context(clear_state=True)
    @tracer.capture_lambda_handler
    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        tracker_id = event["trackerId"]
        logger.append_keys(
            trackerId=tracker_id, executionName=event.get("executionName"), leg=name, retryCount=event.get("retryCount")
        )
        with bank_legs.leg_budget(context.get_remaining_time_in_millis()):
            return step(tracker_id, event)

    return handler


validate = _leg("validate", lambda t, e: bank_legs.validate(t))
fraud_check = _leg("fraud_check", lambda t, e: bank_legs.screen_fraud(t))
limit_check = _leg("limit_check", lambda t, e: bank_legs.check_daily_limit(t))
debit = _leg("debit", lambda t, e: bank_legs.debit(t, _count(e, "retryCount")))
credit = _leg("credit", lambda t, e: bank_legs.credit(t, _count(e, "retryCount")))
settlement = _leg("settlement", lambda t, e: bank_legs.settlement(t, str(e.get("leg")), _count(e, "checks")))
confirm = _leg("confirm", lambda t, e: bank_legs.confirm(_text(e, "debitPaymentId"), _text(e, "creditPaymentId")))
refund = _leg("refund", lambda t, e: bank_legs.refund(t, _count(e, "retryCount")))
ledger_check = _leg("ledger_check", lambda t, e: bank_legs.ledger_check(t))
