"""The Amazon Connect adapter: read a ContactFlowEvent, answer a flat map of strings.

Connect's STRING_MAP validation accepts only a flat object of string values under 32 KB; anything else,
and any exception, sends the caller down the block's Error branch. So a Connect-facing handler never
raises: :func:`connect_handler` turns every failure into an answer with ``status`` and ``errorCode``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import BotoCoreError, ClientError, ConnectTimeoutError, ReadTimeoutError

from holdline.errors import RequestRejected
from holdline.observability import logger, metrics

MAX_ANSWER_BYTES = 32 * 1024

# Error codes by which DynamoDB and Step Functions say "slow down": the flow may try again or fall back.
THROTTLING_CODES = frozenset(
    {
        "ThrottlingException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "ThrottledException",
    }
)

Answer = dict[str, str]


class InvalidEvent(Exception):
    """The event is not a ContactFlowEvent we can read."""


@dataclass(frozen=True)
class ContactFlowEvent:
    contact_id: str
    initial_contact_id: str
    instance_arn: str
    parameters: Mapping[str, Any]
    attributes: Mapping[str, Any] = field(default_factory=dict)

    def value(self, name: str) -> Any:
        """A flow parameter, else the contact attribute of the same name (how flows pass ``trackerId``)."""
        if name in self.parameters:
            return self.parameters[name]
        return self.attributes.get(name)


def parse_event(event: Any) -> ContactFlowEvent:
    if not isinstance(event, Mapping):
        raise InvalidEvent("event is not an object")
    details = event.get("Details")
    if not isinstance(details, Mapping):
        raise InvalidEvent("Details is missing")
    contact = details.get("ContactData")
    if not isinstance(contact, Mapping):
        raise InvalidEvent("Details.ContactData is missing")
    contact_id = contact.get("ContactId")
    if not isinstance(contact_id, str) or not contact_id:
        raise InvalidEvent("ContactData.ContactId is missing")
    parameters = details.get("Parameters", {})
    if parameters is None:
        parameters = {}
    if not isinstance(parameters, Mapping):
        raise InvalidEvent("Details.Parameters is not an object")
    attributes = contact.get("Attributes") or {}
    if not isinstance(attributes, Mapping):
        raise InvalidEvent("ContactData.Attributes is not an object")
    initial = contact.get("InitialContactId")
    instance = contact.get("InstanceARN")
    return ContactFlowEvent(
        contact_id=contact_id,
        initial_contact_id=initial if isinstance(initial, str) and initial else contact_id,
        instance_arn=instance if isinstance(instance, str) else "",
        parameters=parameters,
        attributes=attributes,
    )


def flat_answer(values: Mapping[str, object]) -> Answer:
    """Shape an answer for STRING_MAP validation: strings only, booleans as ``true``/``false``, no ``None``."""
    answer: Answer = {}
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, bool):
            answer[key] = "true" if value else "false"
        elif isinstance(value, str | int):
            answer[key] = str(value)
        else:
            answer[key] = str(value)
    if len(json.dumps(answer).encode()) > MAX_ANSWER_BYTES:
        # Never send Connect an oversize answer: that is an Error branch with no code to branch on.
        return error_answer("ANSWER_TOO_LARGE", retryable=False)
    return answer


def error_answer(code: str, *, retryable: bool, message: str = "Something went wrong on our side.") -> Answer:
    return {
        "status": "ERROR",
        "errorCode": code,
        "errorMessage": message,
        "retryable": str(retryable).lower(),
    }


def rejected_answer(code: str, message: str) -> Answer:
    return {"status": "REJECTED", "errorCode": code, "errorMessage": message, "retryable": "false"}


ConnectHandler = Callable[[dict[str, Any], LambdaContext], Answer]


def connect_handler(
    func: Callable[[ContactFlowEvent, LambdaContext], Mapping[str, object]],
) -> ConnectHandler:
    """Wrap a handler body: parse the event, add correlation ids, never raise, always answer a flat map."""

    def wrapper(event: dict[str, Any], context: LambdaContext) -> Answer:
        try:
            contact_event = parse_event(event)
        except InvalidEvent as exc:
            logger.warning("invalid Connect event", extra={"reason": str(exc)})
            return rejected_answer("INVALID_EVENT", "We could not read that request.")
        logger.append_keys(contactId=contact_event.contact_id)
        try:
            return flat_answer(func(contact_event, context))
        except RequestRejected as exc:
            logger.info("request rejected", extra={"errorCode": exc.code})
            metrics.add_metric(name="RequestsRejected", unit="Count", value=1)
            return rejected_answer(exc.code, exc.message)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            logger.warning("AWS dependency refused", extra={"awsErrorCode": code})
            if code in THROTTLING_CODES:
                return error_answer("THROTTLED", retryable=True, message="We are very busy right now.")
            return error_answer("DEPENDENCY_ERROR", retryable=True)
        except (ConnectTimeoutError, ReadTimeoutError, BotoCoreError) as exc:
            logger.warning("AWS dependency unreachable", extra={"reason": type(exc).__name__})
            return error_answer("DEPENDENCY_TIMEOUT", retryable=True)
        except Exception:
            logger.exception("unexpected failure answering Connect")
            return error_answer("INTERNAL_ERROR", retryable=True)
        finally:
            logger.remove_keys(["contactId", "trackerId", "executionName"])

    wrapper.__name__ = func.__name__
    wrapper.__doc__ = func.__doc__
    return wrapper
