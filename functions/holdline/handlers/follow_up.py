"""The follow-up workflow's functions.

- ``create_task`` (CreateFollowUpTaskFunction): the state machine's leg; raises typed errors for Retry/Catch.
- ``rule_failure`` (ConnectRuleFailureFunction): Connect's "Rules Action Execution Failed" events.
- ``transfer_failed`` (FollowUpTriggerFunction): Holdline's own failure events that need a person.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.utilities.typing import LambdaContext

from holdline.logic import follow_up
from holdline.observability import SERVICE, logger, metrics, tracer


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
def create_task(event: dict[str, Any], context: LambdaContext) -> dict[str, str]:
    tracker_id = event["trackerId"]
    logger.append_keys(trackerId=tracker_id, executionName=event.get("executionName"))
    return follow_up.create_task(tracker_id)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def rule_failure(event: dict[str, Any], context: LambdaContext) -> dict[str, str]:
    detail = event.get("detail") if isinstance(event, dict) else None
    action = str(detail.get("actionType", "UNKNOWN")) if isinstance(detail, dict) else "UNKNOWN"
    metrics.add_metric(name="ConnectRuleActionFailed", unit=MetricUnit.Count, value=1)
    with single_metric(
        name="ConnectRuleActionFailedByAction", unit=MetricUnit.Count, value=1, namespace=metrics.namespace
    ) as metric:
        metric.add_dimension(name="service", value=SERVICE)
        metric.add_dimension(name="actionType", value=action[:64])
    return follow_up.handle_rule_failure(event)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
def transfer_failed(event: dict[str, Any], context: LambdaContext) -> dict[str, str]:
    detail = event.get("detail", {})
    logger.append_keys(trackerId=detail.get("trackerId"))
    return follow_up.follow_up_for_failed_transfer(detail)
