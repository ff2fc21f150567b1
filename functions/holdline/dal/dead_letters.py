"""Dead letters we send ourselves, with the attribute names AWS uses for EventBridge targets' DLQs
(ERROR_CODE, ERROR_MESSAGE, EXHAUSTED_RETRY_CONDITION, RETRY_ATTEMPTS, RULE_ARN, TARGET_ARN), so one
runbook reads them all."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from holdline.dal import aws


def send(queue_url: str, body: Mapping[str, Any], attributes: Mapping[str, str]) -> str:
    answer = aws.call(
        "sqs",
        "send_message",
        QueueUrl=queue_url,
        MessageBody=json.dumps(body, sort_keys=True, default=str),
        MessageAttributes={
            name: {"DataType": "String", "StringValue": value[:1024]} for name, value in attributes.items() if value
        },
    )
    return str(answer["MessageId"])
