"""StatusFunction: polled by the flow between hold prompts. One GetItem of the tracker row, nothing else."""

from __future__ import annotations

from typing import TYPE_CHECKING

from holdline.config import get_settings
from holdline.connect import ContactFlowEvent, connect_handler
from holdline.logic.tracking import status
from holdline.observability import logger

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext


@connect_handler
def _status(event: ContactFlowEvent, context: LambdaContext) -> dict[str, object]:
    return status(event.value("trackerId"), get_settings())


# log_event=False whatever POWERTOOLS_LOGGER_LOG_EVENT says: the event carries the caller's phone number.
handler = logger.inject_lambda_context(clear_state=True, log_event=False)(_status)
