"""The follow-up workflow's functions.

- ``create_task`` (CreateFollowUpTaskFunction): the state machine's leg; raises typed errors for Retry/Catch.
- ``rule_failure`` (ConnectRuleFailureFunction): Connect's "Rules Action Execution Failed" events.
- ``transfer_failed`` (FollowUpTriggerFunction): Holdline's own failure events that need a person.

The two EventBridge targets read their events with Powertools' parser (``event_parser`` and its EventBridge
model, https://docs.powertools.aws.dev/lambda/python/latest/utilities/parser/): an event that does not hold
what they need raises, so Lambda's retries and the OnFailure destination (AsyncInvokeDLQ) keep it for a person.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from holdline.logic import follow_up, rule_failures
from holdline.models.failure_event import FailureEvent
from holdline.models.rule_failure import RuleActionFailedEvent
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
@event_parser(model=RuleActionFailedEvent)
def rule_failure(event: RuleActionFailedEvent, context: LambdaContext) -> dict[str, str]:
    outcome = rule_failures.handle_rule_failure(event)
    if outcome["outcome"] != "DUPLICATE":  # counted once per failure, however often it is delivered
        metrics.add_metric(name="ConnectRuleActionFailed", unit=MetricUnit.Count, value=1)
        with single_metric(
            name="ConnectRuleActionFailedByAction", unit=MetricUnit.Count, value=1, namespace=metrics.namespace
        ) as metric:
            metric.add_dimension(name="service", value=SERVICE)
            metric.add_dimension(name="actionType", value=event.detail.action_type[:64])
    return outcome


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@event_parser(model=FailureEvent)
def transfer_failed(event: FailureEvent, context: LambdaContext) -> dict[str, str]:
    logger.append_keys(trackerId=event.detail.tracker_id)
    return follow_up.follow_up_for_failed_transfer(event.detail)
