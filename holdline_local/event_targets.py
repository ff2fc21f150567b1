"""EventBridge rule -> Lambda target, the way AWS delivers it, for the local stack.

moto's EventBridge delivers to SQS, log groups and buses, and raises NotImplementedError for a Lambda
target. The moto adapter hands those to :class:`LambdaTargetDelivery`, which does what AWS does:

- EventBridge invokes the function asynchronously. If the invoke itself fails (throttled, no such
  function), EventBridge retries per the target's RetryPolicy, then writes the event to the target's
  DeadLetterConfig queue with the attributes AWS sets: RULE_ARN, TARGET_ARN, ERROR_CODE, ERROR_MESSAGE,
  EXHAUSTED_RETRY_CONDITION, RETRY_ATTEMPTS.
- Once invoked, a function error is Lambda's business: it retries per the function's EventInvokeConfig
  (default 2), then sends an invocation record to its OnFailure destination.

Retry sleeps are scaled by the local stack's time scale (1 s each, unscaled; AWS backs off exponentially).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from holdline_local.moto_adapter import LambdaDispatcher, LambdaInvokeRefused


class LambdaTargetDelivery:
    def __init__(
        self,
        dispatcher: LambdaDispatcher,
        sqs: Callable[[], Any],
        time_scale: float,
        invoke_configs: Mapping[str, Mapping[str, Any]],
        queue_urls: Mapping[str, str],
    ) -> None:
        self._dispatcher = dispatcher
        self._sqs = sqs
        self._time_scale = time_scale
        self._invoke_configs = invoke_configs  # function name -> resolved EventInvokeConfig
        self._queue_urls = queue_urls  # queue ARN -> URL
        self._threads: list[threading.Thread] = []

    def deliver(self, rule_arn: str, target: Mapping[str, Any], event: Mapping[str, Any]) -> None:
        """Called by moto's put_events for each matching Lambda target: asynchronous, like AWS."""
        thread = threading.Thread(target=self._run, args=(rule_arn, dict(target), dict(event)), daemon=True)
        self._threads.append(thread)
        thread.start()

    def wait(self, timeout: float = 30) -> None:
        """Tests: until every delivery started so far has finished (delivered or dead-lettered)."""
        deadline = time.monotonic() + timeout
        for thread in list(self._threads):
            thread.join(max(0.0, deadline - time.monotonic()))

    def _sleep(self) -> None:
        time.sleep(self._time_scale)

    def _run(self, rule_arn: str, target: dict[str, Any], event: dict[str, Any]) -> None:
        policy = target.get("RetryPolicy", {})
        max_retries = int(policy.get("MaximumRetryAttempts", 185))
        body = json.dumps(event, default=str)
        attempts = 0
        while True:
            try:
                self._async_invoke(target["Arn"], body)
                return
            except LambdaInvokeRefused as refused:
                if attempts >= max_retries:
                    self._dead_letter(rule_arn, target, body, refused, attempts)
                    return
                attempts += 1
                self._sleep()

    def _async_invoke(self, function_arn: str, body: str) -> None:
        name = function_arn.rsplit(":", 1)[-1]
        config = self._invoke_configs.get(name, {})
        retries = int(config.get("MaximumRetryAttempts", 2))
        for attempt in range(retries + 1):
            headers: dict[str, str] = {}
            answer = self._dispatcher.invoke(function_arn, body, headers, refuse_unknown=True)
            if not headers.get("x-amz-function-error"):
                return
            if attempt < retries:
                self._sleep()
        destination = config.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
        if destination and destination in self._queue_urls:
            record = {
                "version": "1.0",
                "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "requestContext": {
                    "requestId": str(uuid.uuid4()),
                    "functionArn": function_arn,
                    "condition": "RetriesExhausted",
                    "approximateInvokeCount": retries + 1,
                },
                "requestPayload": json.loads(body),
                "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
                "responsePayload": json.loads(answer or b"null"),
            }
            self._sqs().send_message(QueueUrl=self._queue_urls[destination], MessageBody=json.dumps(record))

    def _dead_letter(
        self, rule_arn: str, target: Mapping[str, Any], body: str, refused: LambdaInvokeRefused, attempts: int
    ) -> None:
        dlq_arn = target.get("DeadLetterConfig", {}).get("Arn")
        if not dlq_arn or dlq_arn not in self._queue_urls:
            return  # no DLQ: EventBridge drops the event (and so do we)

        def attribute(value: str) -> dict[str, str]:
            return {"DataType": "String", "StringValue": value}

        self._sqs().send_message(
            QueueUrl=self._queue_urls[dlq_arn],
            MessageBody=body,
            MessageAttributes={
                "RULE_ARN": attribute(rule_arn),
                "TARGET_ARN": attribute(str(target["Arn"])),
                "ERROR_CODE": attribute(refused.error_code),
                "ERROR_MESSAGE": attribute(str(refused)),
                "EXHAUSTED_RETRY_CONDITION": attribute("MaximumRetryAttempts"),
                "RETRY_ATTEMPTS": attribute(str(attempts)),
            },
        )
