"""Start a long-running request: validate, write the tracker row, start the execution; answer at once."""

from __future__ import annotations

import hashlib
import time
from typing import Any

from holdline.config import Settings
from holdline.connect import ContactFlowEvent, WithFacts
from holdline.dal import executions, tracker_table
from holdline.errors import RequestRejected
from holdline.models.requests import parse_request, valid_request_id
from holdline.models.tracker import TrackerRow
from holdline.observability import logger
from holdline.workflows import DEFAULT_OPERATION, get_workflow


def tracker_id_for(operation: str, contact_id: str, request_id: str) -> str:
    """A deterministic id: every retry of one (contact, request) lands on the same row and execution.

    It doubles as the execution name: readable in the console, no PII, only ``[a-z0-9-]`` and 41 chars
    (execution names may be 80 and must avoid whitespace, brackets, wildcards and ``"#%\\^|~`$&,;:/``).
    """
    digest = hashlib.sha256(f"{operation}\n{contact_id}\n{request_id}".encode()).hexdigest()[:32]
    return f"{operation}-{digest}"


def request_key(event: ContactFlowEvent) -> tuple[str, str]:
    """(operation, requestId) as the flow asked: an unset flow attribute arrives as "" (or null, dropped by the
    adapter), so the optional ones default (the ``transfer`` operation; the ContactId). Not yet validated."""
    return event.parameters.get("operation") or DEFAULT_OPERATION, event.parameters.get("requestId") or event.contact_id


def tracker_id_of_request(event: ContactFlowEvent) -> str | None:
    """The tracker id the starter gives (or gave) this contact's request, or None if the request key is not one
    the starter would accept. How status finds a transfer whose start the flow did not hear about."""
    operation, request_id = request_key(event)
    workflow = get_workflow(operation)
    if workflow is None or not valid_request_id(request_id):
        return None
    return tracker_id_for(workflow.operation, event.contact_id, request_id)


def start_request(event: ContactFlowEvent, settings: Settings, *, now: float | None = None) -> dict[str, Any]:
    operation, request_id = request_key(event)
    workflow = get_workflow(operation)
    if workflow is None:
        raise RequestRejected("UNKNOWN_OPERATION", "That request type is not supported.")
    if not valid_request_id(request_id):
        raise RequestRejected("INVALID_PARAMETER", "The request reference is not valid.")
    request = parse_request(workflow.request_model, dict(event.parameters), settings)

    tracker_id = tracker_id_for(workflow.operation, event.contact_id, request_id)
    logger.append_keys(trackerId=tracker_id, executionName=tracker_id)
    fingerprint = request.fingerprint()
    started_at = time.time() if now is None else now
    item = TrackerRow.new(
        tracker_id=tracker_id,
        operation=workflow.operation,
        steps_total=workflow.steps_total,
        contact_id=event.contact_id,
        instance_arn=event.instance_arn,
        request_id=request_id,
        request_fingerprint=fingerprint,
        request=request.to_item(),
        started_at=started_at,
        ttl_days=settings.tracker_ttl_days,
    )
    # Order: the row first, then the execution. The execution reads the request from the row (claim check)
    # and its first step requires the row, so the only gap a crash can leave is a row with no execution,
    # which the next retry closes below. The other order could leave an execution with no row (it fails at
    # its first step) and a retry would then meet a closed execution of that name: a ghost row forever.
    existing = tracker_table.create(item)
    if existing is not None:
        if existing.get("requestFingerprint") != fingerprint:
            logger.warning("idempotency conflict: same request key, different request")
            raise RequestRejected("IDEMPOTENCY_CONFLICT", "That request was already made with other details.")
        logger.info("retry of a started request", extra={"replayed": True})
    # Start (again) even for a retry: the row may have been written by a run that died before starting, and
    # a named Standard execution makes the second start a no-op (same name and input).
    try:
        executions.start_for_tracker(workflow.state_machine_arn(settings), tracker_id, workflow.operation)
    except Exception as exc:
        # The row is ours and exists (the execution may or may not have started: a lost answer, or no time left
        # to try): the ERROR answer names it, so the flow's retry and an agent can find this transfer.
        raise WithFacts(trackerId=tracker_id) from exc
    logger.info("request started", extra={"operation": workflow.operation, **workflow.describe(request)})
    first_step = next(iter(workflow.steps.values()))
    return {
        "status": "STARTED",
        "trackerId": tracker_id,
        "nextPollSeconds": max(settings.poll_seconds, first_step),
    }
