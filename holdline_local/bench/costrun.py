"""Run one call per scenario, one at a time, and count what each consumed (see :mod:`.costmodel`)."""

from __future__ import annotations

import collections
import json
import statistics
from typing import Any

from holdline_local.bench import costmodel, latency
from holdline_local.bench.outcomes import SCENARIOS
from holdline_local.bench.scale import _session_client
from holdline_local.simulator import SimulatedCall
from holdline_local.stack import LocalStack

# What the functions and the state machine ask of DynamoDB, counted where the requests arrive: in moto's
# DynamoDB handler of this process's server. The functions run in execution environments of their own
# (processes), so a counter in their SDK would not be seen here; the server sees every caller's request.
AWS_CALLS: collections.Counter[str] = collections.Counter()
COUNTED_OPERATIONS = {
    "get_item": "GetItem",
    "batch_get_item": "BatchGetItem",
    "query": "Query",
    "scan": "Scan",
    "put_item": "PutItem",
    "update_item": "UpdateItem",
    "delete_item": "DeleteItem",
    "transact_get_items": "TransactGetItems",
    "transact_write_items": "TransactWriteItems",
}


def install_counter() -> None:
    """Wrap moto's DynamoDB request handlers (before the local stack serves a request)."""
    from moto.dynamodb.responses import DynamoHandler

    for method, operation in COUNTED_OPERATIONS.items():
        original = getattr(DynamoHandler, method)

        def counted(self: Any, _original: Any = original, _name: str = f"dynamodb.{operation}") -> Any:
            AWS_CALLS[_name] += 1
            return _original(self)

        setattr(DynamoHandler, method, counted)


def _one_call(
    stack: LocalStack, lam: Any, scenario: Any, flow: dict[str, Any]
) -> tuple[Any, dict[str, int], dict[str, int]]:
    """One simulated call; (report, AWS calls it caused, Lambda invocations by function)."""
    event = scenario.event()

    def invoke(function: str, e: Any) -> tuple[Any, str | None]:
        answer = lam.invoke(FunctionName=function, Payload=json.dumps(e).encode())
        raw = answer["Payload"].read()
        return (json.loads(raw) if raw else None), answer.get("FunctionError")

    before_invocations = dict(stack.invocations())
    AWS_CALLS.clear()
    # Real-time hold prompts: the polls counted are the ones a caller would make for this saga's speed.
    report = SimulatedCall(invoke, event, flow=flow, time_scale=1.0).run()
    if (report.outcome, report.error_code) != (scenario.outcome, scenario.error_code):
        raise RuntimeError(f"{scenario.name}: ended {report.outcome}/{report.error_code}")
    calls = dict(AWS_CALLS)
    invocations = {
        name: count - before_invocations.get(name, 0)
        for name, count in stack.invocations().items()
        if count - before_invocations.get(name, 0)
    }
    return report, calls, invocations


def run(stack: LocalStack, memory_mb: dict[str, int]) -> dict[str, Any]:
    lam = _session_client(stack, "lambda", 4)
    sfn = _session_client(stack, "stepfunctions", 4)
    ddb = _session_client(stack, "dynamodb", 4)
    machine = stack.arn("TransferStateMachine")
    flows = {"async": latency.design_flow(polling=False), "polling": latency.design_flow(polling=True)}
    out: list[dict[str, Any]] = []
    status_ms_all: list[float] = []
    # The first scenario twice: its first run pays for importing the handlers (a cold start) and is dropped.
    for warmup, scenario in [(True, SCENARIOS[0])] + [(False, s) for s in SCENARIOS]:
        measured: dict[str, dict[str, Any]] = {}
        for design, flow in flows.items():
            report, calls, invocations = _one_call(stack, lam, scenario, flow)
            arn = machine.replace(":stateMachine:", ":execution:") + ":" + report.tracker_id
            described = sfn.describe_execution(executionArn=arn)
            if described["status"] == "RUNNING":
                raise RuntimeError(f"{scenario.name}: execution still running after the results answer")
            history = sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
            row = ddb.get_item(
                TableName="TrackerTable", Key={"trackerId": {"S": report.tracker_id}}, ConsistentRead=True
            )
            size = costmodel.item_size(row["Item"])
            write_units, read_units = costmodel.item_units(size)
            durations: dict[str, list[float]] = costmodel.task_durations_ms(history)
            for step in report.steps:
                # A synchronous invocation as the caller saw it; an asynchronous one by how long it ran (its
                # "Load Lambda result"), not by its start, which took the flow no time.
                if (step.kind == "invoke" and step.branch != "Started") or step.kind == "load":
                    durations.setdefault(step.name, []).append(step.duration_ms)
            reads = sum(v for k, v in calls.items() if k in {"dynamodb.GetItem", "dynamodb.Query", "dynamodb.Scan"})
            writes = sum(
                v for k, v in calls.items() if k in {"dynamodb.PutItem", "dynamodb.UpdateItem", "dynamodb.DeleteItem"}
            )
            loads = [s for s in report.steps if s.kind == "load"]
            measured[design] = {
                "report": report,
                "history": history,
                "calls": calls,
                "size": size,
                "durations": durations,
                "waiter_held_ms": sum(s.duration_ms for s in loads),
                "waiter_reads": sum(int((s.answer or {}).get("reads", 0)) for s in loads),
                "cost": costmodel.TransferCost(
                    name=f"{scenario.name} ({design})",
                    transitions=costmodel.count_transitions(history),
                    lambda_invocations=invocations,
                    lambda_ms={name: costmodel.billed_ms(values) for name, values in durations.items()},
                    ddb_reads=reads,
                    ddb_writes=writes,
                    read_units_each=read_units,
                    write_units_each=write_units,
                    polls=invocations.get("StatusFunction", 0),
                    memory_mb=memory_mb,
                ),
            }
        if warmup:
            continue
        ours, polled = measured["async"], measured["polling"]
        cost, polling_cost = ours["cost"], polled["cost"]
        status_ms = statistics.median(polled["durations"].get("StatusFunction", [10.0]))
        status_ms_all.append(status_ms)
        peer = costmodel.polling_design(
            polling_cost,
            dynamodb_transitions=costmodel.dynamodb_task_transitions(polled["history"]),
            describe_ms=status_ms,
        )
        per_poll = costmodel.TransferCost(
            name="one more poll",
            transitions=0,
            lambda_invocations={"StatusFunction": 1},
            lambda_ms={"StatusFunction": float(round(status_ms + 0.5))},
            ddb_reads=1,
            ddb_writes=0,
            read_units_each=polling_cost.read_units_each,
            memory_mb=memory_mb,
        )
        report = ours["report"]
        out.append(
            {
                "scenario": scenario.name,
                "outcome": f"{report.outcome}/{report.error_code or '-'}",
                "transitions": cost.transitions,
                "tracker_transitions": costmodel.dynamodb_task_transitions(ours["history"]),
                "lambda_invocations": cost.lambda_invocations,
                "aws_calls": ours["calls"],
                "ddb_reads": cost.ddb_reads,
                "ddb_writes": cost.ddb_writes,
                "item_bytes": ours["size"],
                "read_units_each": cost.read_units_each,
                "write_units_each": cost.write_units_each,
                "lambda_ms": cost.lambda_ms,
                "per_million": {k: str(v) for k, v in cost.per_million().items()},
                "waiter_held_ms": ours["waiter_held_ms"],
                "waiter_reads": ours["waiter_reads"],
                "waiter_gb_s": ours["waiter_held_ms"] / 1000 * memory_mb.get("OutcomeWaiterFunction", 128) / 1024,
                "polling_per_million": {k: str(v) for k, v in polling_cost.per_million().items()},
                "polling_lambda_invocations": polling_cost.lambda_invocations,
                "polling_ddb_reads": polling_cost.ddb_reads,
                "peer_per_million": {k: str(v) for k, v in peer.per_million().items()},
                "per_poll_per_million": {k: str(v) for k, v in per_poll.per_million().items()},
                "polls": polling_cost.polls,
            }
        )
    status_ms = statistics.median(status_ms_all) if status_ms_all else 10.0
    hold_minute = {
        "async": costmodel.waiter_per_minute(memory_mb.get("OutcomeWaiterFunction", 128)),
        "polling": costmodel.polling_per_minute(status_ms, memory_mb.get("StatusFunction", 128)),
    }
    return {
        "transfers": out,
        "prices": costmodel.PRICES_AS_OF,
        "status_ms": status_ms,
        "hold_minute_per_million": {k: {n: str(v) for n, v in c.per_million().items()} for k, c in hold_minute.items()},
    }
