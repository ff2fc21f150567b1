"""N simulated calls at once through the whole local stack: the starter through the Lambda API, the saga on
moto's Step Functions engine with the sandbox bank, the outcome waiter (status polls if the flow falls back),
the results. Every call must end in the
outcome its scenario implies, every execution must have ended, and the bank must hold exactly the money
the successful transfers moved; only then are throughput and per-call costs reported.

Callers are bounded by a thread pool (each caller holds a thread while on hold); calls arrive at a steady
rate and the run has a deadline after which unfinished calls count as stuck.

CPU is reported in two parts, so the harness does not inflate what the stack costs: the **harness** (the
caller threads: the flow interpreter and the callers' own boto3 clients, measured per thread) and the
**stack** (moto, the sandbox bank and the local runtime in this process, plus every function's execution
environments, read from /proc). The harness reads the flow and the template once per run, not per call.
"""

from __future__ import annotations

import json
import statistics
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.config import Config

from holdline_local import iam
from holdline_local.bench.outcomes import (
    CallResult,
    Scenario,
    check_balances,
    check_calls,
    expected_balances,
    ledger_by_reference,
    mix,
)
from holdline_local.flows import function_placeholders, load_flow
from holdline_local.sandbox_bank import TEST_ACCOUNTS
from holdline_local.simulator import FlowRuleViolation, SimulatedCall, check_flow
from holdline_local.stack import REGION, LocalStack


def _session_client(stack: LocalStack, service: str, pool: int, config: Config | None = None) -> Any:
    """A client of the callers' own session: what the harness calls is never counted as Holdline's work, and
    the pool is as large as the number of callers (botocore's default of 10 would queue them). It signs with
    the local administrator's keys: the stack enforces IAM, as AWS does, and refuses unknown keys."""
    base = Config(max_pool_connections=pool, retries={"total_max_attempts": 1}, read_timeout=120)
    return boto3.session.Session().client(
        service,
        endpoint_url=stack.endpoint,
        region_name=REGION,
        config=base.merge(config) if config is not None else base,
        **iam.admin_credentials(),
    )


def max_overlap(windows: list[tuple[float, float]]) -> int:
    """The largest number of windows open at one instant."""
    edges = sorted([(start, 1) for start, _ in windows] + [(end, -1) for _, end in windows])
    best = current = 0
    for _, step in edges:
        current += step
        best = max(best, current)
    return best


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _executions(sfn: Any, machine_arn: str, before: frozenset[str] = frozenset()) -> dict[str, str]:
    """Execution name -> status, leaving out those named in ``before`` (a stack that ran other work first
    keeps its executions too)."""
    executions: dict[str, str] = {}
    for page in sfn.get_paginator("list_executions").paginate(stateMachineArn=machine_arn):
        for execution in page["executions"]:
            if execution["name"] not in before:
                executions[execution["name"]] = execution["status"]
    return executions


@dataclass
class Drive:
    """What driving N calls through the stack observed."""

    results: list[CallResult]
    windows: list[tuple[float, float]]
    wall_s: float
    stack_cpu_s: float
    harness_cpu_s: float
    functions_cpu_s: float
    unfinished: int
    errors: list[str]
    #: The transfer executions that existed before the run.
    executions_before: frozenset[str]
    invocations: dict[str, int] = field(default_factory=dict)


def drive(
    stack: LocalStack,
    scenarios: list[Scenario],
    *,
    workers: int,
    caller_time_scale: float,
    arrivals_per_s: float,
    deadline_s: float,
) -> Drive:
    """Every scenario as one simulated call through the shipped flow, arriving at a steady rate."""
    lam = _session_client(stack, "lambda", workers)
    # Once per run: re-reading template.yaml and the flow for every call was about a sixth of the CPU the
    # harness charged to each call (issue 11's profile).
    flow, functions = load_flow(), function_placeholders()
    violations = check_flow(flow)
    if violations:
        raise FlowRuleViolation(violations)
    harness_cpu = [0.0]
    results = [CallResult(scenario) for scenario in scenarios]
    windows: list[tuple[float, float]] = []
    lock = threading.Lock()

    def invoker(function: str, event: Mapping[str, Any]) -> tuple[Any, str | None]:
        answer = lam.invoke(FunctionName=function, Payload=json.dumps(event).encode())
        raw = answer["Payload"].read()
        return (json.loads(raw) if raw else None), answer.get("FunctionError")

    def one_call(index: int) -> None:
        result = results[index]
        event = result.event = result.scenario.event()
        opened, thread_cpu = time.monotonic(), time.thread_time()
        report = SimulatedCall(
            invoker,
            event,
            flow=flow,
            functions=functions,
            check=False,
            time_scale=caller_time_scale,
            max_actions=50_000,
        ).run()
        closed, thread_cpu = time.monotonic(), time.thread_time() - thread_cpu
        for step in report.steps:
            # An asynchronous invocation counts by how long it ran (its "Load Lambda result"), not by its start.
            if (step.kind == "invoke" and step.branch != "Started") or step.kind == "load":
                result.durations_ms.setdefault(step.name, []).append(step.duration_ms)
        result.polls = len(result.durations_ms.get("StatusFunction", []))
        result.tracker_id = report.tracker_id
        result.error_code = report.error_code
        result.caller_hears = report.caller_hears
        result.error_branches = list(report.error_branches)
        result.outcome = report.outcome  # last: an empty outcome means the call never came back
        with lock:
            windows.append((opened, closed))
            harness_cpu[0] += thread_cpu

    # The executions already there are not this run's.
    executions_before = frozenset(
        _executions(_session_client(stack, "stepfunctions", 4), stack.arn("TransferStateMachine"))
    )
    invocations_before = dict(stack.invocations())
    assert stack.runtime is not None
    cpu_before, functions_cpu_before = time.process_time(), stack.runtime.cpu_seconds()
    started = time.monotonic()
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="caller")
    futures = []
    for i in range(len(scenarios)):
        # Calls arrive at a steady rate, as callers do; a burst of N in one millisecond only measures
        # how fast one Python process accepts connections.
        delay = started + i / arrivals_per_s - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        futures.append(pool.submit(one_call, i))
    done, not_done = wait(futures, timeout=max(0.0, deadline_s - (time.monotonic() - started)))
    wall = time.monotonic() - started
    process_cpu = time.process_time() - cpu_before
    functions_cpu = stack.runtime.cpu_seconds() - functions_cpu_before
    with lock:
        harness = harness_cpu[0]
    for future in not_done:
        future.cancel()
    pool.shutdown(wait=False, cancel_futures=True)
    return Drive(
        results=results,
        windows=windows,
        wall_s=wall,
        stack_cpu_s=process_cpu - harness + functions_cpu,
        harness_cpu_s=harness,
        functions_cpu_s=functions_cpu,
        unfinished=len(not_done),
        errors=[repr(f.exception()) for f in done if f.exception() is not None],
        executions_before=executions_before,
        invocations={name: count - invocations_before.get(name, 0) for name, count in stack.invocations().items()},
    )


def settled_executions(stack: LocalStack, before: frozenset[str], wait_s: float = 30) -> dict[str, str]:
    """The transfer executions not in ``before``, once none is RUNNING (or after ``wait_s``)."""
    sfn = _session_client(stack, "stepfunctions", 4)
    until = time.monotonic() + wait_s
    while True:
        executions = _executions(sfn, stack.arn("TransferStateMachine"), before)
        if "RUNNING" not in executions.values() or time.monotonic() > until:
            return executions
        time.sleep(0.5)


def latency_summary(results: list[CallResult]) -> dict[str, dict[str, float]]:
    latency: dict[str, dict[str, float]] = {}
    for function in ("StarterFunction", "StatusFunction", "OutcomeWaiterFunction", "ResultsFunction"):
        values = [d for r in results for d in r.durations_ms.get(function, [])]
        if values:
            latency[function] = {
                "median_ms": statistics.median(values),
                "p95_ms": percentile(values, 0.95),
                "max_ms": max(values),
            }
    return latency


def run(
    stack: LocalStack,
    n: int,
    *,
    workers: int,
    caller_time_scale: float,
    arrivals_per_s: float,
    deadline_s: float,
) -> dict[str, Any]:
    scenarios = mix(n)
    assert stack.bank is not None
    # Balances as the run finds them (a fresh stack holds the test accounts' opening balances).
    opening = {name: stack.bank.balance(name) for name in TEST_ACCOUNTS}
    total_before = stack.bank.total_balance()
    run = drive(
        stack,
        scenarios,
        workers=workers,
        caller_time_scale=caller_time_scale,
        arrivals_per_s=arrivals_per_s,
        deadline_s=deadline_s,
    )
    results = run.results
    # The results answer comes from the tracker's last update; the execution closes a moment later.
    executions = settled_executions(stack, run.executions_before)
    problems = [f"caller crashed: {e}" for e in run.errors[:5]]
    if run.unfinished:
        problems.append(f"{run.unfinished} of {n} calls not finished after {deadline_s:.0f} s")
    problems += check_calls(results, executions=executions, ledger=ledger_by_reference(stack.bank.ledger))
    actual = {name: stack.bank.balance(name) for name in opening}
    problems += check_balances({k: v for k, v in expected_balances(opening, scenarios).items() if k in opening}, actual)
    finished = [r for r in results if r.outcome]
    return {
        "n": n,
        "workers": workers,
        "caller_time_scale": caller_time_scale,
        "wall_s": run.wall_s,
        "cpu_s": run.stack_cpu_s,
        "harness_cpu_s": run.harness_cpu_s,
        "functions_cpu_s": run.functions_cpu_s,
        "ok": not problems,
        "problems": problems[:20],
        "problem_count": len(problems),
        "finished": len(finished),
        "outcomes": {
            name: sum(1 for r in results if r.scenario.name == name and r.outcome == r.scenario.outcome)
            for name in sorted({s.name for s in scenarios})
        },
        "throughput_per_s": len(finished) / run.wall_s if run.wall_s else 0.0,
        "cpu_ms_per_call": run.stack_cpu_s * 1000 / n,
        "harness_cpu_ms_per_call": run.harness_cpu_s * 1000 / n,
        "arrivals_per_s": arrivals_per_s,
        "max_calls_on_hold": max_overlap(run.windows),
        "polls_per_call": statistics.mean(r.polls for r in finished) if finished else 0.0,
        "lambda_invocations_per_call": sum(run.invocations.values()) / n,
        "latency": latency_summary(results),
        "bank_total_unchanged": stack.bank.total_balance() == total_before,
    }
