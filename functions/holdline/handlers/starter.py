"""StarterFunction: the flow's first Lambda. Validates, writes the tracker, starts the execution, answers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from holdline.config import get_settings
from holdline.connect import ContactFlowEvent, connect_handler
from holdline.logic.starter import start_request
from holdline.observability import logger, metrics

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext


@connect_handler
def _start(event: ContactFlowEvent, context: LambdaContext) -> dict[str, object]:
    answer = start_request(event, get_settings())
    metrics.add_metric(name="RequestsStarted", unit="Count", value=1)
    return answer


# log_event=False whatever POWERTOOLS_LOGGER_LOG_EVENT says: the event carries the caller's phone number.
handler = logger.inject_lambda_context(clear_state=True, log_event=False)(metrics.log_metrics(_start))
