"""EventBridge rule -> Lambda target, the way AWS delivers it, for the local stack.

moto's EventBridge delivers to SQS, log groups and buses, and raises NotImplementedError for a Lambda
target. The moto adapter hands those to :class:`LambdaTargetDelivery`, which does what AWS does
("Event retry policy and using dead-letter queues",
https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-rule-dlq.html):

- EventBridge invokes the function asynchronously, which needs the function's resource-based policy to
  allow ``events.amazonaws.com`` from this rule (``aws:SourceArn``); without it the invoke is refused
  (``NO_PERMISSIONS``). An unknown function is ``NO_RESOURCE``. A refused invoke is retried per the target's
  RetryPolicy (exponential backoff with jitter, on the time scale), then the event goes to the target's
  DeadLetterConfig queue with the attributes AWS sets (RULE_ARN, TARGET_ARN, ERROR_CODE, ERROR_MESSAGE,
  EXHAUSTED_RETRY_CONDITION, RETRY_ATTEMPTS) - if the queue's policy lets EventBridge send to it;
  otherwise the event is lost, as on AWS (counted in :attr:`LambdaTargetDelivery.lost`).
- Once Lambda accepted the event, Lambda's asynchronous semantics apply (retries, OnFailure destination):
  :mod:`holdline_local.runtime.async_invoke`.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from holdline_local.iam import resource_policy_allows
from holdline_local.runtime import InvokeRefused


class TargetRefused(Exception):
    def __init__(self, error_code: str, message: str) -> None:
        super().__init__(message)
        self.error_code = error_code


#: Hands an event to Lambda's asynchronous queue or raises TargetRefused / InvokeRefused.
HandOff = Callable[[str, str, bytes], None]  # (rule ARN, function ARN, event)
QueuePolicy = Callable[[str], Mapping[str, Any] | None]  # queue ARN -> its policy


class LambdaTargetDelivery:
    def __init__(
        self,
        hand_off: HandOff,
        sqs: Callable[[], Any],
        time_scale: float,
        queue_urls: Mapping[str, str],
        queue_policy: QueuePolicy,
    ) -> None:
        self._hand_off = hand_off
        self._sqs = sqs
        self._time_scale = time_scale
        self._queue_urls = queue_urls  # queue ARN -> URL
        self._queue_policy = queue_policy
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        #: Events EventBridge could neither deliver nor dead-letter (no DLQ, or one it may not write to).
        self.lost: list[dict[str, Any]] = []

    def deliver(self, rule_arn: str, target: Mapping[str, Any], event: Mapping[str, Any]) -> None:
        """Called by moto's put_events for each matching Lambda target: asynchronous, like AWS."""
        thread = threading.Thread(target=self._run, args=(rule_arn, dict(target), dict(event)), daemon=True)
        with self._lock:
            # Started under the lock: wait() must never see (and join) a thread that has not started yet.
            thread.start()
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)

    def wait(self, timeout: float = 30) -> None:
        """Tests: until every delivery started so far has been handed to Lambda or dead-lettered."""
        deadline = time.monotonic() + timeout
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _backoff(self, attempt: int) -> None:
        # "exponential back off and jitter" (EventBridge user guide), capped; on the local time scale.
        time.sleep(random.uniform(0, min(60.0, 2.0**attempt)) * self._time_scale)

    def _run(self, rule_arn: str, target: dict[str, Any], event: dict[str, Any]) -> None:
        policy = target.get("RetryPolicy", {})
        max_retries = int(policy.get("MaximumRetryAttempts", 185))
        body = _payload(target, event)
        attempts = 0
        while True:
            try:
                self._hand_off(rule_arn, str(target["Arn"]), body)
                return
            except (TargetRefused, InvokeRefused) as refused:
                code = refused.error_code if isinstance(refused, TargetRefused) else _error_code(refused.code)
                if attempts >= max_retries or (code in {"NO_RESOURCE", "NO_PERMISSIONS"} and attempts >= 1):
                    self._dead_letter(rule_arn, target, body, code, str(refused), attempts)
                    return
                attempts += 1
                self._backoff(attempts)

    def _dead_letter(
        self, rule_arn: str, target: Mapping[str, Any], body: bytes, code: str, message: str, attempts: int
    ) -> None:
        dlq_arn = target.get("DeadLetterConfig", {}).get("Arn")
        allowed = bool(dlq_arn) and resource_policy_allows(
            self._queue_policy(str(dlq_arn)),
            service="events.amazonaws.com",
            action="sqs:SendMessage",
            resource=str(dlq_arn),
            source_arn=rule_arn,
        )
        if not dlq_arn or dlq_arn not in self._queue_urls or not allowed:
            self.lost.append({"rule": rule_arn, "target": target.get("Arn"), "errorCode": code, "dlq": dlq_arn})
            return

        def attribute(value: str) -> dict[str, str]:
            return {"DataType": "String", "StringValue": value}

        self._sqs().send_message(
            QueueUrl=self._queue_urls[dlq_arn],
            MessageBody=body.decode(),
            MessageAttributes={
                "RULE_ARN": attribute(rule_arn),
                "TARGET_ARN": attribute(str(target["Arn"])),
                "ERROR_CODE": attribute(code),
                "ERROR_MESSAGE": attribute(message),
                "EXHAUSTED_RETRY_CONDITION": attribute("MaximumRetryAttempts"),
                "RETRY_ATTEMPTS": attribute(str(attempts)),
            },
        )


def _error_code(lambda_code: str) -> str:
    """Lambda's refusal -> the ERROR_CODE EventBridge writes to the DLQ."""
    return {
        "TooManyRequestsException": "THROTTLING",
        "ResourceNotFoundException": "NO_RESOURCE",
        "AccessDeniedException": "NO_PERMISSIONS",
    }.get(lambda_code, "ERROR_FROM_TARGET")


def _payload(target: Mapping[str, Any], event: Mapping[str, Any]) -> bytes:
    """The event as EventBridge sends it (``time`` as ISO 8601), or the target's constant ``Input``."""
    if "Input" in target:
        return str(target["Input"]).encode()
    shaped = dict(event)
    if isinstance(shaped.get("time"), int | float):
        shaped["time"] = datetime.fromtimestamp(shaped["time"], UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    shaped.pop("ingestion-time", None)
    return json.dumps(shaped, default=str).encode()
