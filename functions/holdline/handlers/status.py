"""StatusFunction: polled by the flow between hold prompts. One GetItem of the tracker row, nothing else.

The tracker is ``trackerId`` (a parameter, else the contact attribute); without one, the tracker this contact's
request has (the starter's id for (operation, ContactId, requestId), from the same parameters the starter block
passes): how the flow learns whether a transfer started when the starter erred or timed out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from holdline.config import get_settings
from holdline.connect import ContactFlowEvent, connect_handler
from holdline.logic.starter import tracker_id_of_request
from holdline.logic.tracking import status
from holdline.observability import logger

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext


@connect_handler
def _status(event: ContactFlowEvent, context: LambdaContext) -> dict[str, object]:
    return status(event.value("trackerId") or tracker_id_of_request(event), get_settings())


# log_event=False whatever POWERTOOLS_LOGGER_LOG_EVENT says: the event carries the caller's phone number.
handler = logger.inject_lambda_context(clear_state=True, log_event=False)(_status)
