"""One place for logs, traces, metrics and masking, so every handler behaves the same.

Never log a whole event: Connect events carry the caller's phone number and the accounts. Log the masked
facts and the correlation ids (ContactId, trackerId, execution name) instead.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer

SERVICE = "holdline"

logger = Logger(service=SERVICE)
tracer = Tracer(service=SERVICE)
metrics = Metrics(namespace="Holdline", service=SERVICE)


def mask(value: str | None) -> str:
    """Keep the last four characters of an account or phone number: ``CHK-00012345`` -> ``****2345``."""
    if not value:
        return ""
    return "****" + value[-4:] if len(value) > 4 else "****"
