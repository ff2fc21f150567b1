"""ResultsFunction: read once the tracker is final; the flow branches on ``status`` and ``errorCode``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from holdline.config import get_settings
from holdline.connect import ContactFlowEvent, connect_handler
from holdline.logic.tracking import results
from holdline.observability import logger

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext


@connect_handler
def _results(event: ContactFlowEvent, context: LambdaContext) -> dict[str, object]:
    return results(event.value("trackerId"), get_settings())


# log_event=False whatever POWERTOOLS_LOGGER_LOG_EVENT says: the event carries the caller's phone number.
handler = logger.inject_lambda_context(clear_state=True, log_event=False)(_results)
