"""The saga's bank legs (DebitFunction, CreditFunction, ConfirmFunction, RefundFunction), called by the
state machine with ``{"trackerId": ..., "executionName": ...}``. They raise typed errors on purpose:
Step Functions' Retry and Catch match the class name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from holdline.logic import bank_legs
from holdline.observability import logger, tracer

LegHandler = Callable[[dict[str, Any], LambdaContext], dict[str, Any]]


def _leg(step: Callable[[str], dict[str, Any]]) -> LegHandler:
    @logger.inject_lambda_context(clear_state=True)
    @tracer.capture_lambda_handler
    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        tracker_id = event["trackerId"]
        logger.append_keys(trackerId=tracker_id, executionName=event.get("executionName"), leg=step.__name__)
        return step(tracker_id)

    return handler


debit = _leg(bank_legs.debit)
credit = _leg(bank_legs.credit)
confirm = _leg(bank_legs.confirm)
refund = _leg(bank_legs.refund)
