"""Connect-facing handlers against their floor: the raw AWS calls each must make, on the same endpoint
with the same boto3 client (``holdline.dal.aws.client``: same config, same connection pool).

- status and results: the handler vs one ``GetItem`` of the same tracker row;
- starter: the handler vs a raw ``PutItem`` of a tracker-sized row + ``StartExecution``.

The handlers run in-process (what Lambda runs: the decorated ``handler``), so the Lambda API's own cost is
in neither side. Rounds alternate which side goes first; medians are compared. The starter's executions go
to a one-state machine (both sides alike) so background sagas do not skew the timing.
"""

from __future__ import annotations

import json
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from holdline_local.bench.outcomes import SUCCESS
from holdline_local.simulator import SimulatedCall
from holdline_local.stack import LocalStack


@dataclass
class Pair:
    name: str
    floor_name: str
    ours_ms: list[float]
    floor_ms: list[float]
    parts: dict[str, list[float]]  # the handler's layers, for the breakdown

    @property
    def ratio(self) -> float:
        return statistics.median(self.ours_ms) / statistics.median(self.floor_ms)

    def summary(self) -> dict[str, Any]:
        floor = statistics.median(self.floor_ms)
        return {
            "name": self.name,
            "floor": self.floor_name,
            "rounds": len(self.ours_ms),
            "ours_median_ms": statistics.median(self.ours_ms),
            "floor_median_ms": floor,
            "ratio": self.ratio,
            "parts": {k: statistics.median(v) / floor for k, v in self.parts.items()},
        }


def _timed(call: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = call()
    return (time.perf_counter() - started) * 1000, result


def _event(contact_id: str, parameters: dict[str, str], attributes: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "Name": "ContactFlowEvent",
        "Details": {
            "ContactData": {
                "ContactId": contact_id,
                "InitialContactId": contact_id,
                "InstanceARN": "arn:aws:connect:us-east-1:123456789012:instance/bench",
                "Attributes": attributes or {},
            },
            "Parameters": parameters,
        },
    }


class _Context:
    """The parts of the Lambda context the handlers read, for calls made in this process."""

    function_version = "$LATEST"
    memory_limit_in_mb = 512
    log_stream_name = "bench"

    def __init__(self, stack: LocalStack, function: str) -> None:
        self.function_name = function
        self.invoked_function_arn = stack.arn(function)
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function}"
        self._deadline = time.monotonic() + stack.config(function).timeout

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def _context(stack: LocalStack, function: str) -> _Context:
    return _Context(stack, function)


def _alternate(
    rounds: int,
    ours: Callable[[int], float],
    floor: Callable[[int], float],
    parts: dict[str, Callable[[int], float]],
) -> tuple[list[float], list[float], dict[str, list[float]]]:
    ours_ms: list[float] = []
    floor_ms: list[float] = []
    parts_ms: dict[str, list[float]] = {name: [] for name in parts}
    for i in range(rounds):
        sides: list[tuple[Callable[[int], float], list[float]]] = [(ours, ours_ms), (floor, floor_ms)]
        sides += [(fn, parts_ms[name]) for name, fn in parts.items()]
        if i % 2:
            sides.reverse()
        for fn, bucket in sides:
            bucket.append(fn(i))
    return ours_ms, floor_ms, parts_ms


def run(stack: LocalStack, rounds: int = 300, warmup: int = 30) -> list[dict[str, Any]]:
    from holdline.config import get_settings
    from holdline.dal.aws import client
    from holdline.handlers import results as results_handler
    from holdline.handlers import starter as starter_handler
    from holdline.handlers import status as status_handler
    from holdline.logic import tracking
    from holdline_local.cli import _lambda_invoker

    # A real, finished transfer: its row is what status and results read.
    call = SimulatedCall(
        _lambda_invoker(stack.client("lambda")), _event(str(uuid.uuid4()), SUCCESS.parameters()), time_scale=0.01
    ).run()
    if call.outcome != "SUCCEEDED":
        raise RuntimeError(f"the reference transfer ended {call.outcome}/{call.error_code}")
    tracker_id = call.tracker_id
    ddb = client("dynamodb")
    table = get_settings().tracker_table_name
    row = ddb.get_item(TableName=table, Key={"trackerId": {"S": tracker_id}}, ConsistentRead=True)["Item"]
    read_event = _event(str(uuid.uuid4()), {}, {"trackerId": tracker_id})

    def raw_get(_: int) -> float:
        ms, answer = _timed(
            lambda: ddb.get_item(TableName=table, Key={"trackerId": {"S": tracker_id}}, ConsistentRead=True)
        )
        if answer.get("Item", {}).get("status", {}).get("S") != "SUCCEEDED":
            raise RuntimeError("the floor GetItem did not read the finished row")
        return ms

    def handler_call(handler: Any, function: str, expect: dict[str, str]) -> Callable[[int], float]:
        def go(_: int) -> float:
            context = _context(stack, function)  # each invocation gets its own deadline, as on Lambda
            ms, answer = _timed(lambda: handler(read_event, context))
            wrong = {k: answer.get(k) for k, v in expect.items() if answer.get(k) != v}
            if wrong:
                raise RuntimeError(f"{function} answered {answer}, expected {expect}")
            return ms

        return go

    settings = get_settings()
    pairs: list[Pair] = []

    # ---- status ----
    status_parts = {"logic only (tracking.status)": lambda _: _timed(lambda: tracking.status(tracker_id, settings))[0]}
    undecorated = getattr(status_handler, "_status", None)
    if callable(undecorated):
        status_parts["Connect adapter, no Powertools decorators"] = lambda _: _timed(
            lambda: undecorated(read_event, _context(stack, "StatusFunction"))
        )[0]
    status_go = handler_call(status_handler.handler, "StatusFunction", {"status": "SUCCEEDED", "keepWaiting": "false"})
    _alternate(warmup, status_go, raw_get, status_parts)
    pairs.append(Pair("StatusFunction", "GetItem", *_alternate(rounds, status_go, raw_get, status_parts)))

    # ---- results ----
    results_go = handler_call(results_handler.handler, "ResultsFunction", {"status": "SUCCEEDED"})
    results_parts = {
        "logic only (tracking.results)": lambda _: _timed(lambda: tracking.results(tracker_id, settings))[0]
    }
    _alternate(warmup, results_go, raw_get, results_parts)
    pairs.append(Pair("ResultsFunction", "GetItem", *_alternate(rounds, results_go, raw_get, results_parts)))

    # ---- starter ----
    sfn = client("stepfunctions")
    quiet = sfn.create_state_machine(
        name="BenchQuietMachine",
        definition=json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}}),
        roleArn=f"arn:aws:iam::123456789012:role/{'holdline-local'}",
    )["stateMachineArn"]
    saved_arn = settings.transfer_state_machine_arn
    import os

    os.environ["TRANSFER_STATE_MACHINE_ARN"] = quiet
    get_settings.cache_clear()
    try:
        template_row = {k: v for k, v in row.items() if k != "trackerId"}

        def starter_go(i: int) -> float:
            event = _event(str(uuid.uuid4()), SUCCESS.parameters())
            context = _context(stack, "StarterFunction")
            ms, answer = _timed(lambda: starter_handler.handler(event, context))
            if answer.get("status") != "STARTED":
                raise RuntimeError(f"StarterFunction answered {answer}")
            return ms

        def raw_start(i: int) -> float:
            name = f"transfer-{uuid.uuid4().hex}"

            def both() -> Any:
                ddb.put_item(
                    TableName=table,
                    Item={**template_row, "trackerId": {"S": name}},
                    ConditionExpression="attribute_not_exists(trackerId)",
                )
                return sfn.start_execution(
                    stateMachineArn=quiet,
                    name=name,
                    input=json.dumps({"operation": "transfer", "trackerId": name}, sort_keys=True),
                )

            ms, answer = _timed(both)
            if not answer.get("executionArn", "").endswith(name):
                raise RuntimeError("the floor StartExecution did not start")
            return ms

        _alternate(warmup, starter_go, raw_start, {})
        pairs.append(
            Pair("StarterFunction", "PutItem + StartExecution", *_alternate(rounds // 2, starter_go, raw_start, {}))
        )
    finally:
        os.environ["TRANSFER_STATE_MACHINE_ARN"] = saved_arn
        get_settings.cache_clear()
    return [pair.summary() for pair in pairs]
