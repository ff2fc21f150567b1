"""Failure handling: FailureNotifierFunction (DynamoDB Stream of the tracker -> the bus), ReconcilerFunction
(Step Functions status changes -> the tracker) and SweeperFunction (schedule -> the tracker). Not
Connect-facing: they raise on an unexpected error so that their retries and dead-letter queues take over."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from holdline.config import get_settings
from holdline.logic import reconcile
from holdline.observability import logger, metrics, tracer


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def notifier(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Stream batch in, ``batchItemFailures`` out (the ESM has ReportBatchItemFailures on)."""
    settings = get_settings()
    result = reconcile.notify_failures(event.get("Records", []), settings.transfer_state_machine_arn)
    for detail in result.published:
        metrics.add_metric(name="FailureEventsPublished", unit="Count", value=1)
        if detail["additionalInfo"]["manualReviewRequired"]:
            # The alarm "refunds pending" watches this: money may be with neither party until a person acts.
            metrics.add_metric(name="RefundsPending", unit="Count", value=1)
    failures = [{"itemIdentifier": result.failed_sequence}] if result.failed_sequence else []
    return {"batchItemFailures": failures}


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
def reconciler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """An EventBridge "Step Functions Execution Status Change" event (FAILED, TIMED_OUT, ABORTED)."""
    detail = event.get("detail")
    if event.get("source") != "aws.states" or not isinstance(detail, dict):
        # Not ours to act on; raising would only send it round the retries into the DLQ.
        logger.warning("ignored an event that is not a Step Functions status change")
        return {"reconciled": False}
    return {"reconciled": reconcile.reconcile_execution(detail)}


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def sweeper(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    report = reconcile.sweep(get_settings())
    metrics.add_metric(name="SweeperReconciled", unit="Count", value=report.reconciled)
    if report.anomalies:
        metrics.add_metric(name="SweeperAnomalies", unit="Count", value=report.anomalies)
    return report.to_json()
