"""Failure handling: FailureNotifierFunction (DynamoDB Stream of the tracker -> the bus), ReconcilerFunction
(Step Functions status changes -> the tracker) and SweeperFunction (schedule -> the tracker, and FAILED rows
whose announcement was lost -> the bus). Not
Connect-facing: they raise on an unexpected error so that their retries and dead-letter queues take over."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent, event_source
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from holdline.config import get_settings
from holdline.logic import failure_events, reconcile
from holdline.observability import logger, metrics, tracer

#: Powertools' batch processor: each stream record is handled on its own; the ones that raised are answered as
#: ``batchItemFailures`` (the mapping has ReportBatchItemFailures on), so Lambda retries from the first of them
#: and the rest of the batch is not lost ("Partial batch response",
#: https://docs.powertools.aws.dev/lambda/python/latest/utilities/batch/). A batch in which every record failed
#: raises, so the mapping retries (and bisects) it whole.
stream_processor = BatchProcessor(event_type=EventType.DynamoDBStreams)


def _announce(record: DynamoDBRecord) -> None:
    change = record.dynamodb
    if change is None or not failure_events.became_failed(record.get("eventName"), change.old_image, change.new_image):
        return
    detail = failure_events.announce(str(change.keys["trackerId"]), change.old_image, get_settings())
    if detail is None:
        return
    metrics.add_metric(name="FailureEventsPublished", unit="Count", value=1)
    if detail["additionalInfo"]["manualReviewRequired"]:
        # The alarm "refunds pending" watches this: money may be with neither party until a person acts.
        metrics.add_metric(name="RefundsPending", unit="Count", value=1)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def notifier(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Stream batch in, ``batchItemFailures`` out."""
    return dict(process_partial_response(event, _announce, stream_processor, context))


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@event_source(data_class=EventBridgeEvent)
def reconciler(event: EventBridgeEvent, context: LambdaContext) -> dict[str, Any]:
    """An EventBridge "Step Functions Execution Status Change" event (FAILED, TIMED_OUT, ABORTED), of any
    workflow's state machine."""
    if event.source != "aws.states" or not isinstance(event.get("detail"), dict):
        # Not ours to act on; raising would only send it round the retries into the DLQ.
        logger.warning("ignored an event that is not a Step Functions status change")
        return {"reconciled": False}
    return {"reconciled": reconcile.reconcile_execution(event.detail)}


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def sweeper(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    report = reconcile.sweep(get_settings())
    metrics.add_metric(name="SweeperReconciled", unit="Count", value=report.reconciled)
    if report.announced:
        # Failures whose announcement the notifier lost: published now, counted as the notifier counts its own.
        metrics.add_metric(name="FailureEventsPublished", unit="Count", value=report.announced)
        metrics.add_metric(name="SweeperAnnounced", unit="Count", value=report.announced)
    if report.manual_review_announced:
        metrics.add_metric(name="RefundsPending", unit="Count", value=report.manual_review_announced)
    if report.anomalies:
        metrics.add_metric(name="SweeperAnomalies", unit="Count", value=report.anomalies)
    if report.failed:
        metrics.add_metric(name="SweeperRowsFailed", unit="Count", value=report.failed)
        raise reconcile.SweepIncomplete(f"{report.failed} of {report.examined} rows could not be swept")
    return report.to_json()
