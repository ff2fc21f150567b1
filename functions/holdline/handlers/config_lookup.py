"""ConfigLookupFunction: the flow's first Lambda. Language and greeting for the number the caller dialed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from holdline.connect import Answer, ContactFlowEvent, connect_handler
from holdline.logic.line_config import lookup
from holdline.observability import logger

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext


@connect_handler
def _config(event: ContactFlowEvent, context: LambdaContext) -> dict[str, object]:
    return lookup(event.parameters.get("dialedNumber"))


def _with_dialed_number(event: Any) -> Any:
    """The dialed number is the contact's SystemEndpoint, unless the flow passes ``dialedNumber`` itself."""
    try:
        details = event["Details"]
        parameters = details.get("Parameters") or {}
        if "dialedNumber" in parameters:
            return event
        address = details["ContactData"]["SystemEndpoint"]["Address"]
    except (KeyError, TypeError, AttributeError):
        return event  # connect_handler answers INVALID_EVENT, or the lookup falls back to the default item
    return {**event, "Details": {**details, "Parameters": {**parameters, "dialedNumber": address}}}


# log_event=False whatever POWERTOOLS_LOGGER_LOG_EVENT says: the event carries the caller's phone number.
@logger.inject_lambda_context(clear_state=True, log_event=False)
def handler(event: dict[str, Any], context: LambdaContext) -> Answer:
    return _config(_with_dialed_number(event), context)
