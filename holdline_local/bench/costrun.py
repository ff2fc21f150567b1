"""Run one call per scenario, one at a time, and count what each consumed (see :mod:`.costmodel`)."""

from __future__ import annotations

import collections
import json
import statistics
import uuid
from typing import Any

import boto3

from holdline_local.bench import costmodel
from holdline_local.bench.outcomes import SCENARIOS
from holdline_local.bench.scale import _session_client
from holdline_local.simulator import SimulatedCall
from holdline_local.stack import LocalStack

# What the functions and the state machine call, counted at the botocore layer of boto3's default session
# (every client Holdline and moto's executor create); the harness uses sessions of its own.
AWS_CALLS: collections.Counter[str] = collections.Counter()


def _count(model: Any, **_: Any) -> None:
    AWS_CALLS[f"{model.service_model.service_name}.{model.name}"] += 1


def install_counter() -> None:
    """Before the local stack starts: clients inherit the session's handlers when they are created."""
    boto3._get_default_session().events.register("before-call", _count)


def run(stack: LocalStack, memory_mb: dict[str, int]) -> dict[str, Any]:
    lam = _session_client(stack, "lambda", 4)
    sfn = _session_client(stack, "stepfunctions", 4)
    ddb = _session_client(stack, "dynamodb", 4)
    machine = stack.arn("TransferStateMachine")
    out: list[dict[str, Any]] = []
    # The first scenario twice: its first run pays for importing the handlers (a cold start) and is dropped.
    for warmup, scenario in [(True, SCENARIOS[0])] + [(False, s) for s in SCENARIOS]:
        contact = str(uuid.uuid4())
        event = {
            "Name": "ContactFlowEvent",
            "Details": {
                "ContactData": {"ContactId": contact, "InitialContactId": contact, "Attributes": {}},
                "Parameters": scenario.parameters(),
            },
        }

        def invoke(function: str, e: Any) -> tuple[Any, str | None]:
            answer = lam.invoke(FunctionName=function, Payload=json.dumps(e).encode())
            raw = answer["Payload"].read()
            return (json.loads(raw) if raw else None), answer.get("FunctionError")

        before_invocations = dict(stack.invocations())
        AWS_CALLS.clear()
        # Real-time hold prompts: the polls counted are the ones a caller would make for this saga's speed.
        report = SimulatedCall(invoke, event, time_scale=1.0).run()
        if (report.outcome, report.error_code) != (scenario.outcome, scenario.error_code):
            raise RuntimeError(f"{scenario.name}: ended {report.outcome}/{report.error_code}")
        arn = machine.replace(":stateMachine:", ":execution:") + ":" + report.tracker_id
        described = sfn.describe_execution(executionArn=arn)
        if described["status"] == "RUNNING":
            raise RuntimeError(f"{scenario.name}: execution still running after the results answer")
        history = sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
        calls = dict(AWS_CALLS)
        invocations = {
            name: count - before_invocations.get(name, 0)
            for name, count in stack.invocations().items()
            if count - before_invocations.get(name, 0)
        }
        row = ddb.get_item(TableName="TrackerTable", Key={"trackerId": {"S": report.tracker_id}}, ConsistentRead=True)
        size = costmodel.item_size(row["Item"])
        write_units, read_units = costmodel.item_units(size)
        durations: dict[str, list[float]] = costmodel.task_durations_ms(history)
        for step in report.steps:
            if step.kind == "invoke":
                durations.setdefault(step.name, []).append(step.duration_ms)
        reads = sum(v for k, v in calls.items() if k in {"dynamodb.GetItem", "dynamodb.Query", "dynamodb.Scan"})
        writes = sum(
            v for k, v in calls.items() if k in {"dynamodb.PutItem", "dynamodb.UpdateItem", "dynamodb.DeleteItem"}
        )
        cost = costmodel.TransferCost(
            name=scenario.name,
            transitions=costmodel.count_transitions(history),
            lambda_invocations=invocations,
            lambda_ms={name: costmodel.billed_ms(values) for name, values in durations.items()},
            ddb_reads=reads,
            ddb_writes=writes,
            read_units_each=read_units,
            write_units_each=write_units,
            polls=invocations.get("StatusFunction", 0),
            memory_mb=memory_mb,
        )
        if warmup:
            continue
        status_ms = statistics.median(durations.get("StatusFunction", [10.0]))
        peer = costmodel.polling_design(
            cost, dynamodb_transitions=costmodel.dynamodb_task_transitions(history), describe_ms=status_ms
        )
        per_poll = costmodel.TransferCost(
            name="one more poll",
            transitions=0,
            lambda_invocations={"StatusFunction": 1},
            lambda_ms={"StatusFunction": float(round(status_ms + 0.5))},
            ddb_reads=1,
            ddb_writes=0,
            read_units_each=read_units,
            memory_mb=memory_mb,
        )
        out.append(
            {
                "scenario": scenario.name,
                "outcome": f"{report.outcome}/{report.error_code or '-'}",
                "transitions": cost.transitions,
                "tracker_transitions": costmodel.dynamodb_task_transitions(history),
                "lambda_invocations": invocations,
                "aws_calls": calls,
                "ddb_reads": reads,
                "ddb_writes": writes,
                "item_bytes": size,
                "read_units_each": read_units,
                "write_units_each": write_units,
                "lambda_ms": cost.lambda_ms,
                "per_million": {k: str(v) for k, v in cost.per_million().items()},
                "peer_per_million": {k: str(v) for k, v in peer.per_million().items()},
                "per_poll_per_million": {k: str(v) for k, v in per_poll.per_million().items()},
                "polls": cost.polls,
            }
        )
    return {"transfers": out, "prices": costmodel.PRICES_AS_OF}
