"""The Amazon Connect adapter: read a ContactFlowEvent, answer a flat map of strings.

Connect's STRING_MAP validation accepts only a flat object of string values under 32 KB; anything else,
and any exception, sends the caller down the block's Error branch. So a Connect-facing handler never
raises: :func:`connect_handler` turns every failure into an answer with ``status`` and ``errorCode``.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

import holdline
from holdline import config
from holdline.config import Settings
from holdline.dal import aws
from holdline.errors import RequestRejected
from holdline.observability import logger, metrics

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

MAX_ANSWER_BYTES = 32 * 1024
# Connect's ContactData (attributes up to 32 KB, references, segment attributes) fits well under this; a
# bigger event is not from a flow, and is refused before anything reads it.
MAX_EVENT_BYTES = 128 * 1024
# Flow parameters are short strings (accounts, amounts, ids); a longer one is refused, not truncated.
MAX_PARAMETER_CHARS = 1024
MAX_PARAMETERS = 64
# Time kept back from the budget to shape the answer and get it to Connect.
ANSWER_RESERVE_SECONDS = 0.3
# An asynchronous block's clock starts when Connect invokes, before our handler runs (a cold start's Init,
# the invocation queue): an asynchronous answer leaves this much of the block's limit unused.
ASYNC_CONNECT_MARGIN_SECONDS = 5.0
# Connect ContactIds are UUIDs; be lenient on the format but never let control characters or JSON through.
_CONTACT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}", re.ASCII)

# Error codes by which DynamoDB and Step Functions say "slow down": the flow may try again or fall back.
THROTTLING_CODES = aws.THROTTLING_CODES

Answer = dict[str, str]


class InvalidEvent(Exception):
    """The event is not a ContactFlowEvent we can read (``code`` ``INVALID_EVENT``), or one of its flow
    parameters is not a short string (``INVALID_PARAMETER``)."""

    def __init__(self, reason: str, code: str = "INVALID_EVENT") -> None:
        super().__init__(reason)
        self.code = code


_INVALID_MESSAGES = {
    "INVALID_EVENT": "We could not read that request.",
    "INVALID_PARAMETER": "A detail of that request is not valid.",
}


@dataclass(frozen=True)
class ContactFlowEvent:
    contact_id: str
    initial_contact_id: str
    instance_arn: str
    parameters: Mapping[str, str]
    attributes: Mapping[str, Any] = field(default_factory=dict)

    def value(self, name: str) -> Any:
        """A flow parameter, else the contact attribute of the same name (how flows pass ``trackerId``)."""
        if name in self.parameters:
            return self.parameters[name]
        return self.attributes.get(name)


def _event_size(event: Mapping[str, Any]) -> int:
    try:
        return len(json.dumps(event, default=str).encode())
    except (TypeError, ValueError):  # circular or unserializable: not something Lambda could have sent
        return MAX_EVENT_BYTES + 1


def _parameters(raw: object) -> dict[str, str]:
    """Connect sends parameters as a flat map of strings. ``null`` is an unset value; anything else that is
    not a short string (a number, a list, a nested object) is refused rather than coerced."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise InvalidEvent("Details.Parameters is not an object")
    if len(raw) > MAX_PARAMETERS:
        raise InvalidEvent("too many parameters")
    parameters: dict[str, str] = {}
    for name, value in raw.items():
        if value is None:
            continue
        if not isinstance(value, str):
            raise InvalidEvent(f"parameter {str(name)[:40]!r} is not a string", "INVALID_PARAMETER")
        if len(value) > MAX_PARAMETER_CHARS:
            raise InvalidEvent(f"parameter {str(name)[:40]!r} is too long", "INVALID_PARAMETER")
        parameters[str(name)] = value
    return parameters


def parse_event(event: Any) -> ContactFlowEvent:
    if not isinstance(event, Mapping):
        raise InvalidEvent("event is not an object")
    if _event_size(event) > MAX_EVENT_BYTES:
        raise InvalidEvent("event is too large")
    details = event.get("Details")
    if not isinstance(details, Mapping):
        raise InvalidEvent("Details is missing")
    contact = details.get("ContactData")
    if not isinstance(contact, Mapping):
        raise InvalidEvent("Details.ContactData is missing")
    contact_id = contact.get("ContactId")
    if not isinstance(contact_id, str) or not contact_id:
        raise InvalidEvent("ContactData.ContactId is missing")
    if not _CONTACT_ID.fullmatch(contact_id):
        raise InvalidEvent("ContactData.ContactId is not an id")
    attributes = contact.get("Attributes") or {}
    if not isinstance(attributes, Mapping):
        raise InvalidEvent("ContactData.Attributes is not an object")
    parameters = _parameters(details.get("Parameters"))
    initial = contact.get("InitialContactId")
    instance = contact.get("InstanceARN")
    return ContactFlowEvent(
        contact_id=contact_id,
        initial_contact_id=initial if isinstance(initial, str) and _CONTACT_ID.fullmatch(initial) else contact_id,
        instance_arn=instance if isinstance(instance, str) and len(instance) <= 256 else "",
        parameters=parameters,
        attributes=attributes,
    )


class ColdStart:
    """How much of Connect's limit a new execution environment's Init has used before its first invocation runs.

    Connect's InvocationTimeLimitSeconds runs from when the block invoked the function ("AWS Lambda function"
    block, https://docs.aws.amazon.com/connect/latest/adminguide/invoke-lambda-function-block.html); on a cold
    start that includes the Init phase, which Lambda runs before the invocation and does not count against the
    function's Timeout, so the context's remaining time does not show it ("Understanding the Lambda execution
    environment lifecycle", https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtime-environment.html).

    Init is measured from the package's first import (``holdline.IMPORTED_AT``) to the handler being built (its
    module calls :func:`connect_handler`), and counted once, by the first invocation, only when Lambda says the
    environment was initialised on demand (``AWS_LAMBDA_INITIALIZATION_TYPE``, "Defined runtime environment
    variables", https://docs.aws.amazon.com/lambda/latest/dg/configuration-envvars.html): provisioned
    concurrency and SnapStart initialise ahead of any invocation. It is Init's duration, not the time since Init
    began, that is counted: Lambda may also initialise an on-demand environment ahead of a request (same lifecycle
    page), and then counting the gap would leave its first caller no budget at all; counting the duration there
    only costs that caller a little of its budget. The runtime's own start before our first import (tens of ms)
    is inside :data:`ANSWER_RESERVE_SECONDS`."""

    def __init__(self, began: float) -> None:
        self.began = began
        self.ended: float | None = None
        self.counted = False

    def initialized(self) -> None:
        if self.ended is None:
            self.ended = time.monotonic()

    def take(self) -> float:
        """Init seconds the current invocation must count: the first one's, once; 0 for every other."""
        if self.counted or self.ended is None:
            return 0.0
        self.counted = True
        if os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE") != "on-demand":
            return 0.0
        return max(0.0, self.ended - self.began)


cold_start = ColdStart(holdline.IMPORTED_AT)


def budget_seconds(context: Any, settings: Settings, *, asynchronous: bool = False, init_seconds: float = 0.0) -> float:
    """How long AWS calls may go on: the Lambda's remaining time or what is left of Connect's block timeout
    (less ``init_seconds``, the Init a cold start spent of it, see :class:`ColdStart`), whichever ends first,
    less a reserve to answer. Past it, the answer is an error code the flow can branch on.

    ``asynchronous``: the block invokes in ASYNCHRONOUS mode (up to 60 s), whose clock started before ours."""
    limit = settings.connect_timeout_seconds
    if asynchronous:
        limit = settings.connect_async_timeout_seconds - ASYNC_CONNECT_MARGIN_SECONDS
    limit -= init_seconds
    try:
        remaining = float(context.get_remaining_time_in_millis()) / 1000
    except (AttributeError, TypeError, ValueError):
        remaining = limit
    return max(0.0, min(remaining, limit) - ANSWER_RESERVE_SECONDS)


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


class WithFacts(Exception):
    """``raise WithFacts(trackerId=...) from exc``: answer as ``exc`` would be answered, plus these facts, which
    hold although the request failed (the starter's row exists: the flow, and an agent, can find the transfer
    by its id)."""

    def __init__(self, **facts: str) -> None:
        super().__init__(", ".join(sorted(facts)))
        self.facts = facts


def failure_answer(exc: BaseException) -> Answer:
    """The answer for a failure of a handler body: a rejection, or an error code the flow can branch on."""
    if isinstance(exc, WithFacts) and exc.__cause__ is not None:
        return {**failure_answer(exc.__cause__), **exc.facts}
    if isinstance(exc, RequestRejected):
        logger.info("request rejected", extra={"errorCode": exc.code})
        metrics.add_metric(name="RequestsRejected", unit="Count", value=1)
        return rejected_answer(exc.code, exc.message)
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        logger.warning("AWS dependency refused", extra={"awsErrorCode": code})
        if code in THROTTLING_CODES:
            return error_answer("THROTTLED", retryable=True, message="We are very busy right now.")
        return error_answer("DEPENDENCY_ERROR", retryable=True)
    if isinstance(exc, aws.TRANSIENT_FAULTS):  # timed out, unreachable, or no time left for another attempt
        logger.warning("AWS dependency unreachable", extra={"reason": type(exc).__name__})
        return error_answer("DEPENDENCY_TIMEOUT", retryable=True)
    if isinstance(exc, BotoCoreError):  # e.g. no credentials: our configuration, but the flow can still fall back
        logger.warning("AWS dependency call failed", extra={"reason": type(exc).__name__})
        return error_answer("DEPENDENCY_ERROR", retryable=True)
    logger.error("unexpected failure answering Connect", exc_info=exc)
    return error_answer("INTERNAL_ERROR", retryable=True)


ConnectHandler = Callable[[dict[str, Any], "LambdaContext"], Answer]


def connect_handler(
    func: Callable[[ContactFlowEvent, LambdaContext], Mapping[str, object]],
    *,
    asynchronous: bool = False,
) -> ConnectHandler:
    """Wrap a handler body: parse the event, add correlation ids, never raise, always answer a flat map.

    The body runs inside :func:`aws.budget` (see :func:`budget_seconds`; the first invocation of a new environment
    counts its Init, :class:`ColdStart`); ``asynchronous`` for a function the flow invokes in ASYNCHRONOUS mode."""
    # Called as the handler's module is built: the end of this environment's Init.
    cold_start.initialized()

    def wrapper(event: dict[str, Any], context: LambdaContext) -> Answer:
        # Read before anything else: the budget runs from the handler's start.
        init_seconds = cold_start.take()
        try:
            contact_event = parse_event(event)
        except InvalidEvent as exc:
            # The reason names the field, never its value: a bad event may still carry a phone number.
            logger.warning("invalid Connect event", extra={"reason": str(exc), "errorCode": exc.code})
            return rejected_answer(exc.code, _INVALID_MESSAGES[exc.code])
        logger.append_keys(contactId=contact_event.contact_id)
        try:
            settings = config.get_settings()
            seconds = budget_seconds(context, settings, asynchronous=asynchronous, init_seconds=init_seconds)
            if init_seconds:
                logger.info("cold start", extra={"initMs": int(init_seconds * 1000), "budgetMs": int(seconds * 1000)})
            with aws.budget(seconds):
                return flat_answer(func(contact_event, context))
        except Exception as exc:
            return failure_answer(exc)
        finally:
            logger.remove_keys(["contactId", "trackerId", "executionName"])

    wrapper.__name__ = func.__name__
    wrapper.__doc__ = func.__doc__
    return wrapper
