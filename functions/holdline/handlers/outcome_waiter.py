"""OutcomeWaiterFunction: invoked by the flow in ASYNCHRONOUS mode; answers the moment the outcome is known.

The status answer (the same fields the status function gives) once the tracker is final, else a keep-waiting
answer before Connect's 60 s; it only reads the tracker row. See holdline/logic/outcome.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from holdline.config import get_settings
from holdline.connect import ContactFlowEvent, connect_handler
from holdline.logic.outcome import wait_for_outcome
from holdline.observability import logger

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext


def _wait(event: ContactFlowEvent, context: LambdaContext) -> dict[str, object]:
    return wait_for_outcome(event.value("trackerId"), get_settings())


# log_event=False whatever POWERTOOLS_LOGGER_LOG_EVENT says: the event carries the caller's phone number.
handler = logger.inject_lambda_context(clear_state=True, log_event=False)(connect_handler(_wait, asynchronous=True))
