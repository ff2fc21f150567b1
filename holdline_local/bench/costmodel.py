"""The cost model: what one transfer consumes, counted from real runs, priced at list prices.

Nothing here knows today's ASL: state transitions are counted from an execution's history
(GetExecutionHistory), Lambda invocations from the local stack's dispatcher, DynamoDB requests from the
botocore calls the functions and the state machine actually made.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

# List prices, us-east-1, as given in issue 7 (checked against the AWS pricing pages as of 2025).
PRICES_AS_OF = "2025 list prices, us-east-1, no free tier"
SFN_STANDARD_PER_TRANSITION = Decimal("0.025") / 1000
LAMBDA_PER_REQUEST = Decimal("0.20") / 1_000_000
LAMBDA_PER_GB_SECOND = Decimal("0.0000166667")
DDB_PER_WRITE_UNIT = Decimal("1.25") / 1_000_000
DDB_PER_READ_UNIT = Decimal("0.25") / 1_000_000
MILLION = 1_000_000

# Step Functions' DescribeExecution quota (largest regions): 300 burst, 15 per second refill.
DESCRIBE_EXECUTION_REFILL_PER_SECOND = 15
DESCRIBE_EXECUTION_BURST = 300

_TASK_SCHEDULED = {"TaskScheduled", "LambdaFunctionScheduled", "ActivityScheduled"}


def count_transitions(events: Sequence[Mapping[str, Any]]) -> int:
    """Billed state transitions of one Standard execution, from its history.

    Step Functions bills every state entered, and every retry of a Task again (each attempt is a
    transition). So: one per ``*StateEntered`` event, plus one per extra attempt inside a state
    (a second, third... ``TaskScheduled`` between a ``StateEntered`` and its ``StateExited``).
    """
    transitions = 0
    attempts_in_state = 0
    for event in events:
        kind = str(event.get("type", ""))
        if kind.endswith("StateEntered"):
            transitions += 1
            attempts_in_state = 0
        elif kind in _TASK_SCHEDULED:
            attempts_in_state += 1
            if attempts_in_state > 1:
                transitions += 1
    return transitions


def dynamodb_task_transitions(events: Sequence[Mapping[str, Any]]) -> int:
    """Transitions spent in states whose task is a DynamoDB call (the tracker updates), counted like above."""
    total = 0
    for event in events:
        if event.get("type") in _TASK_SCHEDULED:
            details = event.get("taskScheduledEventDetails") or {}
            if details.get("resourceType") == "dynamodb":
                total += 1
    return total


def task_durations_ms(events: Sequence[Mapping[str, Any]]) -> dict[str, list[float]]:
    """Lambda task durations by function name, from TaskStarted to its end event (coarse: ms timestamps)."""
    durations: dict[str, list[float]] = {}
    started: Any = None
    function = ""
    for event in events:
        kind = event.get("type")
        if kind == "TaskScheduled":
            details = event.get("taskScheduledEventDetails") or {}
            function = ""
            if details.get("resourceType") == "lambda":
                parameters = str(details.get("parameters", ""))
                marker = ":function:"
                if marker in parameters:
                    function = parameters.split(marker, 1)[1].split('"', 1)[0]
        elif kind == "TaskStarted":
            started = event.get("timestamp")
        elif kind in {"TaskSucceeded", "TaskFailed", "TaskTimedOut"} and function and started is not None:
            ended = event.get("timestamp")
            durations.setdefault(function, []).append((ended - started).total_seconds() * 1000)
            started = None
    return durations


def item_units(size_bytes: int) -> tuple[int, int]:
    """(write units, strongly consistent read units) for an item of this size: 1 KB per WRU, 4 KB per RRU."""
    return max(1, math.ceil(size_bytes / 1024)), max(1, math.ceil(size_bytes / 4096))


def item_size(item: Mapping[str, Any]) -> int:
    """DynamoDB's item size: attribute names plus values (strings and numbers by their text), from the
    low-level attribute-value map. Close enough to price by (a few bytes of overhead per attribute)."""

    def value_size(value: Mapping[str, Any]) -> int:
        ((kind, inner),) = value.items()
        if kind == "M":
            return 3 + sum(len(k.encode()) + value_size(v) for k, v in inner.items())
        if kind == "L":
            return 3 + sum(value_size(v) for v in inner)
        if kind in {"BOOL", "NULL"}:
            return 1
        return len(str(inner).encode())

    return sum(len(name.encode()) + value_size(value) for name, value in item.items())


@dataclass
class TransferCost:
    """What one transfer consumed. ``lambda_ms`` is the billed time per function (ms per invocation, summed)."""

    name: str
    transitions: int
    lambda_invocations: Mapping[str, int]
    lambda_ms: Mapping[str, float]
    ddb_reads: int
    ddb_writes: int
    read_units_each: int = 1
    write_units_each: int = 1
    polls: int = 0
    #: MemorySize by function (the template's), for GB-seconds; Lambda's minimum (128) for any other.
    memory_mb: Mapping[str, int] = field(default_factory=dict)
    #: A modelled (fractional) number of invocations instead of the counted ones.
    invocations_override: float | None = None

    @property
    def invocations(self) -> float:
        if self.invocations_override is not None:
            return self.invocations_override
        return sum(self.lambda_invocations.values())

    def dollars(self) -> dict[str, Decimal]:
        gb_seconds = sum(
            (
                Decimal(str(ms)) / 1000 * Decimal(self.memory_mb.get(name, 128)) / 1024
                for name, ms in self.lambda_ms.items()
            ),
            Decimal(0),
        )
        return {
            "Step Functions": self.transitions * SFN_STANDARD_PER_TRANSITION,
            "Lambda requests": Decimal(str(self.invocations)) * LAMBDA_PER_REQUEST,
            "Lambda duration": gb_seconds * LAMBDA_PER_GB_SECOND,
            "DynamoDB writes": self.ddb_writes * self.write_units_each * DDB_PER_WRITE_UNIT,
            "DynamoDB reads": self.ddb_reads * self.read_units_each * DDB_PER_READ_UNIT,
        }

    def per_million(self) -> dict[str, Decimal]:
        lines = {name: (value * MILLION).quantize(Decimal("0.01")) for name, value in self.dollars().items()}
        lines["total"] = sum(lines.values(), Decimal(0))
        return lines


def billed_ms(durations_ms: Sequence[float]) -> float:
    """Lambda bills each invocation rounded up to the millisecond."""
    return float(sum(math.ceil(d) for d in durations_ms))


def polling_design(ours: TransferCost, *, dynamodb_transitions: int, describe_ms: float) -> TransferCost:
    """The peers' design: no tracker, the status Lambda calls DescribeExecution on every poll.

    Same saga minus the tracker: no PutItem, no tracker updates (their states and transitions go), no reads.
    Its status Lambda is invoked as often as ours; ``describe_ms`` is its duration (DescribeExecution
    itself is not billed, it is throttled).
    """
    invocations = dict(ours.lambda_invocations)
    lambda_ms = dict(ours.lambda_ms)
    polls = invocations.get("StatusFunction", 0)
    lambda_ms["StatusFunction"] = polls * math.ceil(describe_ms)
    return TransferCost(
        name=f"{ours.name} (DescribeExecution polling)",
        transitions=ours.transitions - dynamodb_transitions,
        lambda_invocations=invocations,
        lambda_ms=lambda_ms,
        ddb_reads=0,
        ddb_writes=0,
        polls=polls,
        memory_mb=ours.memory_mb,
    )


def max_concurrent_calls_describe_polling(poll_seconds: float) -> int:
    """Calls one account and Region can keep on hold when every poll is a DescribeExecution: each call
    polls once per ``poll_seconds``, and the bucket refills at 15 per second (the 300 burst only buys a
    minute or so at the start)."""
    return math.floor(DESCRIBE_EXECUTION_REFILL_PER_SECOND * poll_seconds)


#: The outcome waiter's pace (functions/holdline/logic/outcome.py) and how long one invocation holds at most.
WAITER_POLL_SECONDS = 0.3
WAITER_ROUND_SECONDS = 55.0
#: The polling loop's cycle: the flow's hold prompt with the default hold message (4 s) and its 3 s pause.
POLLING_CYCLE_SECONDS = 7.0


def waiter_per_minute(memory_mb: int) -> TransferCost:
    """One minute a caller holds, in the async design: the outcome waiter is held the whole minute (GB-s at its
    MemorySize), reads every 0.3 s, and is invoked again each ~55 s round."""
    return TransferCost(
        name="a minute on hold, outcome waiter",
        transitions=0,
        lambda_invocations={"OutcomeWaiterFunction": 0},
        lambda_ms={"OutcomeWaiterFunction": 60_000.0},
        ddb_reads=math.ceil(60 / WAITER_POLL_SECONDS),
        ddb_writes=0,
        memory_mb={"OutcomeWaiterFunction": memory_mb},
        invocations_override=60 / WAITER_ROUND_SECONDS,
    )


def polling_per_minute(status_ms: float, memory_mb: int) -> TransferCost:
    """One minute a caller holds, in the polling loop: a status invocation (one read) per hold prompt."""
    polls = 60 / POLLING_CYCLE_SECONDS
    return TransferCost(
        name="a minute on hold, polling loop",
        transitions=0,
        lambda_invocations={"StatusFunction": 0},
        lambda_ms={"StatusFunction": polls * math.ceil(status_ms)},
        ddb_reads=math.ceil(polls),
        ddb_writes=0,
        memory_mb={"StatusFunction": memory_mb},
        invocations_override=polls,
    )
