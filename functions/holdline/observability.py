"""One place for logs, traces, metrics and masking, so every handler behaves the same.

Never log a whole event: Connect events carry the caller's phone number and the accounts. Log the masked
facts and the correlation ids (ContactId, trackerId, execution name) instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger, Metrics

if TYPE_CHECKING:
    from aws_lambda_powertools import Tracer

SERVICE = "holdline"
#: What the Tracer patches: the AWS SDK only, by name. The X-Ray SDK's ``http.client`` patch records each
#: request's full URL ("Tracing calls to downstream HTTP web services",
#: https://docs.aws.amazon.com/xray/latest/devguide/xray-sdk-python-httpclients.html), and the bank's API names the
#: account in its paths (``/v1/accounts/<number>``): a patched ``http.client`` would put account numbers in X-Ray.
#: Powertools' default (``patch_modules=None``, https://docs.powertools.aws.dev/lambda/python/latest/core/tracer/)
#: patches whatever the X-Ray SDK's ``patch_all()`` patches; with the pinned aws-xray-sdk that list leaves
#: ``httplib`` out (it is patched only with ``double_patch=True``), so this list makes it our decision rather than
#: two libraries' defaults. The AWS SDK's subsegments record the operation and, for DynamoDB, the table (the X-Ray
#: SDK's parameter whitelist), never a key or an item. A bank call shows in its leg's handler subsegment.
#: tests/e2e/test_trace_privacy.py reads what X-Ray would record.
TRACED_MODULES = ("boto3", "botocore")

logger = Logger(service=SERVICE)
metrics = Metrics(namespace="Holdline", service=SERVICE)
tracer: Tracer


def __getattr__(name: str) -> Any:
    """``tracer`` is made on first use. Creating a Powertools Tracer imports the X-Ray SDK (about 40% of a
    Connect-facing handler's import time, measured with ``python -X importtime``), so the functions on
    Connect's 8 s path don't: the Lambda service's active tracing still records their invocations, and the
    saga's legs and the asynchronous functions, where a cold start costs no caller anything, trace in depth."""
    if name == "tracer":
        from aws_lambda_powertools import Tracer

        globals()["tracer"] = made = Tracer(service=SERVICE, patch_modules=TRACED_MODULES)
        return made
    raise AttributeError(name)


def mask(value: str | None) -> str:
    """Keep the last four characters of an account or phone number: ``CHK-00012345`` -> ``****2345``."""
    if not value:
        return ""
    return "****" + value[-4:] if len(value) > 4 else "****"
